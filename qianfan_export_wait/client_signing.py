"""How ``ExportStatusClient`` signs: one ``Authorization`` per second and request, the
server-clock offset it keeps (``protocol.skew`` decides when a ``RequestExpired`` answer
changes it), and the keys an error must hide."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .auth import Credentials
from .errors import AuthError
from .protocol import Request
from .protocol._common import signed_headers
from .protocol.skew import MAX_CLOCK_OFFSET, SkewDecision, SkewVerdict, skew_decision

logger = logging.getLogger("qianfan_export_wait")


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

    def _skew_decision(
        self, error: AuthError, *, signed_with: float, received_at: float, resigns: int
    ) -> SkewDecision:
        """Whether to sign a request refused with ``error`` again (``protocol.skew``
        decides); adopts and logs an offset learnt from the answer's ``Date``."""
        decision = skew_decision(
            error,
            signed_with=signed_with,
            offset=self._clock_offset,
            received_at=received_at,
            resigns=resigns,
        )
        if decision.verdict is SkewVerdict.DATE_TOO_FAR and error.server_date is not None:
            logger.warning(
                "the server's Date header (%s) is %+.0f s off the local clock, more than "
                "%g s: not adopted; check the local clock if this repeats",
                error.server_date.isoformat(),
                decision.measured,
                MAX_CLOCK_OFFSET,
            )
        elif decision.learnt:
            logger.warning(
                "local clock is %+.0f s off the server's Date header; signing with the "
                "server's time",
                -decision.offset,
            )
            self._clock_offset = decision.offset
            self._signed_second = None
        return decision

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
