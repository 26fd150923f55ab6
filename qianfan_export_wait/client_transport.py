"""How ``ExportStatusClient`` meets the wire: what a failed exchange amounts to (the one
place transport errors are mapped), reading a body within ``MAX_RESPONSE_BYTES``, the
throttle-aware retry wait, and the connection slots sized to the waiters and to a given
session's connector."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from tenacity.wait import wait_base

from .endpoints import MAX_RESPONSE_BYTES
from .errors import ApiError, CreateUncertainError, ResponseFormatError, TransientError
from .protocol.classify import tls_error

if TYPE_CHECKING:
    from .client import ExportStatusClient

_NOT_IDEMPOTENT = frozenset({"create_export"})
"""Calls whose request must never be sent twice blindly (see ``_transport_error``)."""


def _is_create(operation: str) -> bool:
    """Whether ``operation`` (e.g. ``"v2.create_export"``) must never be sent twice blindly."""
    return (operation.partition(".")[2] or operation) in _NOT_IDEMPOTENT


def _surely_not_sent(exc: BaseException) -> bool:
    """Whether a failed exchange certainly never put the request on the wire: the
    connection itself could not be made (refused, unreachable, a name that does not
    resolve). A timeout, a reset or a cut-off answer may have followed the request."""
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
        exc, aiohttp.ClientSSLError
    ):
        return True
    return isinstance(exc, ConnectionRefusedError)


def _transport_error(
    exc: BaseException, client: ExportStatusClient, operation: str
) -> ApiError | None:
    """What a failed exchange amounts to (``None``: not a transport failure): the one place
    transport errors are mapped. For a call that is not idempotent (a create), a failure
    after which the request may have reached the server is ``CreateUncertainError``."""
    may_have_been_sent = isinstance(
        exc, (asyncio.TimeoutError, aiohttp.ClientError, OSError)
    ) and not (_surely_not_sent(exc) or isinstance(exc, aiohttp.ClientSSLError))
    if _is_create(operation) and may_have_been_sent:
        return CreateUncertainError(
            f"the {operation} request was sent but no answer came back "
            f"({type(exc).__name__}: {exc}); the export may exist: look it up before "
            "creating it again",
            operation=operation,
        )
    if isinstance(exc, asyncio.TimeoutError):
        return TransientError(
            f"no complete answer within the request timeout ({client.request_timeout:g} s)"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
        return tls_error(client._host, cause)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ResponseFormatError(f"response body was cut off: {exc}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return TransientError(f"connection failed: {type(exc).__name__}: {exc}")
    return None


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    if length is not None and length > MAX_RESPONSE_BYTES:
        raise ResponseFormatError(
            f"response of {length} bytes refused (limit {MAX_RESPONSE_BYTES} bytes)",
            http_status=response.status,
        )
    if length is not None and not response.headers.get("Content-Encoding"):
        return await response.read()  # the length is the size: nothing to count
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        received += len(chunk)
        if received > MAX_RESPONSE_BYTES:
            raise ResponseFormatError(
                f"response larger than {MAX_RESPONSE_BYTES} bytes refused",
                http_status=response.status,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _throttle_aware(backoff: wait_base) -> Callable[[Any], float]:
    """``backoff``, but never shorter than a throttle answer's ``Retry-After``."""

    def wait(retry_state: Any) -> float:
        delay = float(backoff(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        return max(delay, float(retry_after)) if retry_after else delay

    return wait


DEFAULT_CONNECTION_LIMIT = 100


class _Slots:
    """A resizable number of requests allowed at once, with a queue for the others."""

    __slots__ = ("_waiting", "capacity", "used")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self) -> None:
        """Wait for a free slot and take it."""
        while self.used >= self.capacity:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._wake_one()  # pass the wake-up on: it was ours
                raise
        self.used += 1

    def give_back(self) -> None:
        """Free a slot."""
        self.used -= 1
        self._wake_one()

    def resize(self, capacity: int) -> None:
        """Allow ``capacity`` at once from now on."""
        grown = capacity - self.capacity
        self.capacity = capacity
        for _ in range(max(0, grown)):
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return


def _session_limit(session: aiohttp.ClientSession) -> int | None:
    """The connections a caller's session allows to one host (``None``: no limit)."""
    connector = session.connector
    if connector is None:
        return None
    limits = [limit for limit in (connector.limit, connector.limit_per_host) if limit]
    return min(limits) if limits else None
