"""How ``ExportStatusClient`` signs: one ``Authorization`` per second and request, the
server-clock offset it learns from a ``RequestExpired`` answer, and the keys an error must
hide."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .auth import Credentials
from .endpoints import MAX_CLOCK_OFFSET
from .errors import AuthError
from .protocol import Request
from .protocol._common import signed_headers

logger = logging.getLogger("qianfan_export_wait")

_SKEW_THRESHOLD_SECONDS = 30.0


class _Signing:
    """The signing side of ``ExportStatusClient``: headers signed once per second, the
    clock offset learnt from a ``RequestExpired`` answer's ``Date``, and what an error
    from the server must not show of our keys. Its state is the client's."""

    credentials: Credentials
    _host: str
    _clock: Callable[[], float]
    _clock_offset: float
    _signed_second: int | None
    _headers: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, str]]

    @property
    def clock_offset(self) -> float:
        """Seconds added to the local clock when signing, learnt from the server's ``Date``."""
        return self._clock_offset

    def _signed_headers(self, request: Request) -> dict[str, str]:
        # The body is not signed, so one Authorization value per method, path and query
        # serves every request signed within the same second.
        second = int(self._clock() + self._clock_offset)
        if second != self._signed_second:
            self._headers.clear()
            self._signed_second = second
        key = (request.method, request.path, request.query)
        headers = self._headers.get(key)
        if headers is None:
            headers = signed_headers(request, self.credentials, self._host, second)
            self._headers[key] = headers
        return headers

    def _learn_clock_offset(self, error: AuthError) -> bool:
        if error.bce_error_code != "RequestExpired" or error.server_date is None:
            return False
        offset = error.server_date.timestamp() - self._clock()
        if not abs(offset) <= MAX_CLOCK_OFFSET:
            # A server clock a day or more off is a broken or hostile header, not skew:
            # signing with it would fail (or not even format) from then on.
            logger.warning(
                "the server's Date header (%s) is %+.0f s off the local clock, more than "
                "%g s: not adopted; check the local clock if this repeats",
                error.server_date.isoformat(),
                offset,
                MAX_CLOCK_OFFSET,
            )
            return False
        if abs(offset - self._clock_offset) < _SKEW_THRESHOLD_SECONDS:
            return False
        logger.warning(
            "local clock is %+.0f s off the server's Date header; signing with the server's time",
            -offset,
        )
        self._clock_offset = offset
        self._signed_second = None
        return True

    @property
    def _hidden(self) -> dict[str, str]:
        """What ``ApiError.scrub`` hides: our keys (if long enough to be told from
        ordinary words), each by its masked form."""
        credentials = self.credentials
        hidden = {}
        if len(credentials.access_key) > 4:
            hidden[credentials.access_key] = credentials.masked_access_key
        if len(credentials.secret_key) >= 8:
            hidden[credentials.secret_key] = "<secret key>"
        return hidden
