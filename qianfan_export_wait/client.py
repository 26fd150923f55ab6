"""``ExportStatusClient``: one signed status request over aiohttp, classified into a result
or an error. The only module that talks to the network."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base
from yarl import URL

from ._checks import check_count, check_number
from .auth import Credentials
from .download import Downloader, DownloadRecord, ProgressHook
from .endpoints import (
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    EXPORT_STATUS_PATH,
    MAX_CLOCK_OFFSET,
    MAX_RESPONSE_BYTES,
    SIGNATURE_EXPIRATION_SECONDS,
    SIGNED_HEADERS,
    host_header,
    status_request_headers,
    validate_base_url,
)
from .errors import (
    ApiError,
    AuthError,
    ClientClosedError,
    ConfigurationError,
    CreateUncertainError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)
from .models import ExportId, ExportStatus
from .protocol import (
    APIS,
    CreatedExport,
    Operation,
    Request,
    V1CreateExportArgs,
    V2CreateExportArgs,
    create_export,
    export_status,
)
from .protocol._common import JSON_CONTENT_TYPE, signed_headers, uncertain
from .protocol.classify import tls_error
from .unknown_states import UnknownStates

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "EXPORT_STATUS_PATH",
    "MAX_CLOCK_OFFSET",
    "MAX_RESPONSE_BYTES",
    "SIGNATURE_EXPIRATION_SECONDS",
    "SIGNED_HEADERS",
    "ClientStats",
    "ExportStatusClient",
    "host_header",
    "status_request_headers",
    "validate_base_url",
]

logger = logging.getLogger("qianfan_export_wait")

_CONTENT_TYPE = JSON_CONTENT_TYPE
_SKEW_THRESHOLD_SECONDS = 30.0
_MAX_RESIGNS = 3
DEFAULT_CONNECTION_LIMIT = 100
_NOT_IDEMPOTENT = frozenset({"create_export"})
"""Calls whose request must never be sent twice blindly (see ``_transport_error``)."""

ArgsT = TypeVar("ArgsT")
RecordT = TypeVar("RecordT")


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


def _throttle_aware(backoff: wait_base) -> Callable[[Any], float]:
    """``backoff``, but never shorter than a throttle answer's ``Retry-After``."""

    def wait(retry_state: Any) -> float:
        delay = float(backoff(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        return max(delay, float(retry_after)) if retry_after else delay

    return wait


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


@dataclass(slots=True)
class ClientStats:
    """Counters since the client was made: HTTP requests sent and how they ended."""

    requests: int = 0
    succeeded: int = 0
    throttled: int = 0
    transient_errors: int = 0
    retries: int = 0
    clock_resyncs: int = 0
    unknown_states: dict[str, int] = field(default_factory=dict)
    """Answers per export state outside the known ones (each read as running)."""


class ExportStatusClient:
    """Async client for the export-status API: ``await client.get_status(export_id)``.

    Use it as ``async with``. It owns one ``aiohttp.ClientSession`` unless given one (which
    it then leaves open), reuses connections, signs every request with ``bce-auth-v1``, and
    retries ``TransientError`` a few times on a jittered exponential backoff (tenacity).

    ``api`` picks the generation ``get_status`` and ``fetch_once`` speak (``"v1"``, the
    default, or ``"v2"``); ``call`` sends any ``protocol`` operation of either. A state
    outside the known ones is logged once per state, counted in ``stats.unknown_states``
    and read as running; with ``unknown_state_timeout`` an export that stays in such
    states that many seconds raises ``UnknownStateError`` (the waiter ends it as ``error``).

    ``connection_limit`` caps requests at once (default: 100, raised to a waiter's
    ``max_in_flight``); a given session's own connector limits are respected. Time spent
    waiting for a free connection does not count toward ``request_timeout``.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 10.0,
        max_attempts: int = 3,
        retry_wait: wait_base | None = None,
        allow_insecure_http: bool = False,
        connection_limit: int | None = None,
        clock: Callable[[], float] = time.time,
        api: str = "v1",
        unknown_state_timeout: float | None = None,
    ) -> None:
        if api not in APIS:
            raise ConfigurationError(f"api {api!r} is not one of 'v1', 'v2'")
        if not isinstance(credentials, Credentials):
            raise ConfigurationError(
                f"credentials must be a Credentials, got {type(credentials).__name__}"
            )
        check_number("request_timeout", request_timeout)
        check_count("max_attempts", max_attempts)
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = validate_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.api = api
        self._status_operation: Operation[Any, ExportStatus] = export_status(api)
        self._host = host_header(self._base_url)
        self.credentials = credentials
        self.request_timeout = float(request_timeout)
        self.max_attempts = max_attempts
        self._retry_wait = retry_wait or wait_random_exponential(multiplier=0.2, max=2.0)
        self._timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        self._session = session
        self._owns_session = session is None
        self._closed = False
        if connection_limit is not None:
            check_count("connection_limit", connection_limit)
        # Requests allowed at once. Waiting for one of these is not request time: the
        # request timeout starts once a connection is free. None: follow the waiters.
        self._pinned_limit = connection_limit
        self._session_limit = _session_limit(session) if session is not None else None
        self._slots = _Slots(self._capacity_for(DEFAULT_CONNECTION_LIMIT))
        self._clock = clock
        self._clock_offset = 0.0
        self._signed_second: int | None = None
        self._headers: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], URL] = {}
        self._unknown = UnknownStates(give_up_after=unknown_state_timeout)
        self.stats = ClientStats()

    @classmethod
    def from_env(cls, **kwargs: Any) -> ExportStatusClient:
        """A client with credentials from ``QIANFAN_ACCESS_KEY`` / ``QIANFAN_SECRET_KEY``."""
        return cls(Credentials.from_env(), **kwargs)

    @property
    def base_url(self) -> str:
        """The endpoint requests go to, e.g. ``https://qianfan.baidubce.com``."""
        return str(self._base_url).rstrip("/")

    @property
    def clock_offset(self) -> float:
        """Seconds added to the local clock when signing, learnt from the server's ``Date``."""
        return self._clock_offset

    def __repr__(self) -> str:
        api = "" if self.api == "v1" else f", api={self.api!r}"
        return (
            f"ExportStatusClient(base_url={self.base_url!r}, credentials={self.credentials!r}{api})"
        )

    async def __aenter__(self) -> ExportStatusClient:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client for good (and its session, if it made it): later use raises
        ``ClientClosedError``. A session given to it is left open."""
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` was called."""
        return self._closed

    def _closed_error(self) -> ClientClosedError:
        return ClientClosedError(
            f"the ExportStatusClient for {self.base_url} was closed (aclose); "
            "no request was sent: make a new client"
        )

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise self._closed_error()
        if self._session is None:
            # The connector does not cap connections: _slots does, and can grow.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), raise_for_status=False
            )
            self._owns_session = True
        return self._session

    def _capacity_for(self, wanted: int) -> int:
        for cap in (self._pinned_limit, self._session_limit):
            if cap is not None:
                return cap
        return wanted

    @property
    def connection_limit(self) -> int:
        """Requests this client sends at once; more wait for a free connection."""
        return self._slots.capacity

    def ensure_connections(self, wanted: int) -> int:
        """Allow ``wanted`` requests at once, unless ``connection_limit`` or the limits of
        a given session's connector say less; return how many are allowed."""
        capacity = self._capacity_for(max(wanted, self._slots.capacity))
        self._slots.resize(capacity)
        return capacity

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

    async def download(
        self,
        status: ExportStatus,
        dest_dir: str | os.PathLike[str],
        *,
        extract: bool = False,
        bos_endpoint: str | None = None,
        on_progress: ProgressHook | None = None,
        **options: Any,
    ) -> DownloadRecord:
        """Fetch a Done export's file into ``dest_dir/<exportID>/`` and return its record
        (path, bytes, sha256); raises a ``DownloadError`` subclass.

        A ``Downloader`` on this client's session and credentials does the work; an
        expired link is replaced by ``get_status``. ``options`` go to ``Downloader``.
        """
        async with Downloader(
            dest_dir,
            credentials=self.credentials,
            session=self._ensure_session(),
            refresh=self.get_status,
            bos_endpoint=bos_endpoint,
            extract=extract,
            on_progress=on_progress,
            **options,
        ) as downloader:
            return await downloader.download(status)

    def get_status(self, export_id: ExportId) -> Coroutine[Any, Any, ExportStatus]:
        """The current status of one export: ``await client.get_status(export_id)``;
        raises an ``ApiError`` subclass on failure (a bad id: ``ValueError`` at once).

        ``TransientError`` is retried up to ``max_attempts`` in all; other errors are not.
        """
        operation = self._status_operation
        request = operation.build(export_id)
        return self._watched(
            operation, export_id, self._send(operation, request, export_id, self.max_attempts)
        )

    def fetch_once(self, export_id: ExportId) -> Coroutine[Any, Any, ExportStatus]:
        """One request, no transient retry (the waiter schedules its own); ``export_id``
        must already be valid.

        On ``RequestExpired`` it signs again and resends: with the offset another request
        learnt meanwhile, if any, else with one learnt from this answer's ``Date``.
        """
        operation = self._status_operation
        request = operation.build(export_id)
        return self._watched(operation, export_id, self._send(operation, request, export_id, 1))

    def status_fetch(
        self, api: str | None = None
    ) -> Callable[[ExportId], Coroutine[Any, Any, ExportStatus]]:
        """``fetch_once`` for the export-status call of generation ``api`` (default: the
        client's ``api``), as the waiter calls it."""
        if api is None or api == self.api:
            return self.fetch_once
        operation: Operation[Any, ExportStatus] = export_status(api)

        def fetch(export_id: ExportId) -> Coroutine[Any, Any, ExportStatus]:
            request = operation.build(export_id)
            return self._watched(operation, export_id, self._send(operation, request, export_id, 1))

        return fetch

    async def call(
        self, operation: Operation[ArgsT, RecordT], args: ArgsT, *, attempts: int = 1
    ) -> RecordT:
        """Send one call of the API (any ``protocol`` operation, e.g.
        ``protocol.eval_status("v2")``) with ``args`` and return its record, or raise the
        classified ``ApiError`` (a bad argument: ``ConfigurationError`` before sending).

        ``attempts`` > 1 retries ``TransientError`` on a jittered backoff; a call that is
        not idempotent (a create) is never retried here.
        """
        request = operation.build(args)
        if operation.name in _NOT_IDEMPOTENT:
            attempts = 1
        else:
            check_count("attempts", attempts)
        return await self._send(operation, request, args, attempts)

    async def create_export(
        self, args: V1CreateExportArgs | V2CreateExportArgs, *, attempts: int = 5
    ) -> CreatedExport:
        """Create an export of an evaluation (``V1CreateExportArgs`` or
        ``V2CreateExportArgs`` picks the generation) and return its id.

        Creating is not idempotent, so it is retried (up to ``attempts`` in all) only when
        the request surely created nothing: a throttle answer (after its ``Retry-After``,
        if any) or a connection that could not be made. After a timeout, a reset or an
        unclear answer it raises ``CreateUncertainError``: the export may exist.
        """
        check_count("attempts", attempts)
        api = "v1" if isinstance(args, V1CreateExportArgs) else "v2"
        operation: Operation[Any, CreatedExport] = create_export(api)
        request = operation.build(args)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=_throttle_aware(self._retry_wait),
            retry=retry_if_exception_type((ThrottledError, TransientError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.retries += 1
                return await self._send(operation, request, args, 1)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _watched(
        self,
        operation: Operation[Any, ExportStatus],
        export_id: ExportId,
        answer: Coroutine[Any, Any, ExportStatus],
    ) -> ExportStatus:
        status = await answer
        if status.state_is_known:
            if self._unknown.tracking:
                self._unknown.known(export_id)
            return status
        error = self._unknown.seen(export_id, status, self._clock())
        self.stats.unknown_states[status.state_name] = self._unknown.counts[status.state_name]
        if error is not None:
            raise error
        return status

    async def _send(
        self, operation: Operation[Any, RecordT], request: Request, args: Any, attempts: int
    ) -> RecordT:
        if self._closed:
            raise self._closed_error()
        try:
            stats = self.stats
            resends = 0
            url = self._urls.get((request.path, request.query))
            if url is None:
                url = self._base_url.with_path(request.path)
                if request.query:
                    url = url.with_query(request.query_params)
                self._urls[(request.path, request.query)] = url
            while True:
                slots = self._slots
                if slots.used < slots.capacity:
                    slots.used += 1
                else:
                    await slots.take()
                stats.requests += 1
                signed_with = self._clock_offset
                session = self._session or self._ensure_session()
                try:
                    async with session.post(
                        url,
                        data=request.body,
                        headers=self._signed_headers(request),
                        timeout=self._timeout,
                        allow_redirects=False,
                    ) as response:
                        status = response.status
                        headers = response.headers
                        length = response.content_length
                        if (
                            length is not None
                            and length <= MAX_RESPONSE_BYTES
                            and "Content-Encoding" not in headers
                        ):
                            payload = await response.read()
                        else:
                            payload = await self._read_body(response)
                except ApiError as error:  # from _read_body: too large
                    if _is_create(request.operation):  # it was sent: it may have been made
                        raise uncertain(error, request.operation) from error
                    stats.transient_errors += isinstance(error, TransientError)
                    raise
                except Exception as exc:
                    if self._closed:  # closed while this request was in flight
                        raise self._closed_error() from exc
                    failure = _transport_error(exc, self, request.operation)
                    if failure is None:
                        raise
                    failure.scrub(self._hidden)  # a reason phrase is the server's text
                    stats.transient_errors += isinstance(failure, TransientError)
                    raise failure from None
                finally:
                    slots.give_back()
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("POST %s %r -> HTTP %d", request.target, args, status)
                try:
                    record = operation.read(
                        status,
                        headers,
                        payload,
                        datetime.fromtimestamp(self._clock(), UTC),
                        args=args,
                    )
                except ThrottledError as error:
                    stats.throttled += 1
                    error.scrub(self._hidden)
                    raise
                except TransientError as error:
                    stats.transient_errors += 1
                    error.scrub(self._hidden)
                    raise
                except AuthError as error:
                    error.scrub(self._hidden)
                    resends += 1
                    if error.bce_error_code != "RequestExpired" or resends > _MAX_RESIGNS:
                        raise
                    if self._clock_offset == signed_with:
                        if not self._learn_clock_offset(error):
                            raise
                        stats.clock_resyncs += 1
                    continue
                except ApiError as error:
                    error.scrub(self._hidden)  # a server may echo our request headers back
                    raise
                stats.succeeded += 1
                return record
        except TransientError:
            if attempts <= 1:
                raise
        return await self._retry(operation, request, args, attempts - 1)

    async def _retry(
        self, operation: Operation[Any, RecordT], request: Request, args: Any, attempts: int
    ) -> RecordT:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._retry_wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.stats.retries += 1
                return await self._send(operation, request, args, 1)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

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

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
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
