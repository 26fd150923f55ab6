"""``ExportStatusClient``: one signed status request over aiohttp, classified into a result
or an error. The only module that talks to the network."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Coroutine
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
from .client_signing import _Signing
from .client_stats import ClientStats
from .client_transport import (
    _NOT_IDEMPOTENT,
    DEFAULT_CONNECTION_LIMIT,
    _is_create,
    _read_body,
    _session_limit,
    _Slots,
    _throttle_aware,
    _transport_error,
)
from .downloads import Downloader, DownloadRecord, ProgressHook
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
    ThrottledError,
    TransientError,
)
from .models import ExportId, ExportState, ExportStatus
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
from .protocol._common import JSON_CONTENT_TYPE, uncertain
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

ArgsT = TypeVar("ArgsT")
RecordT = TypeVar("RecordT")


class ExportStatusClient(_Signing):
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
        return self._send(operation, request, export_id, self.max_attempts, watch=True)

    def fetch_once(self, export_id: ExportId) -> Coroutine[Any, Any, ExportStatus]:
        """One request, no transient retry (the waiter schedules its own); ``export_id``
        must already be valid.

        On ``RequestExpired`` it signs again and resends: with the offset another request
        learnt meanwhile, if any, else with one learnt from this answer's ``Date``.
        """
        operation = self._status_operation
        request = operation.build(export_id)
        return self._send(operation, request, export_id, 1, watch=True)

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
            return self._send(operation, request, export_id, 1, watch=True)

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

    def _watch(self, export_id: ExportId, status: ExportStatus) -> None:
        """Time ``export_id`` in an unknown state (raising ``UnknownStateError`` once it
        has been in one too long), or forget it once its state is known again."""
        if isinstance(status.state, ExportState):
            if self._unknown.tracking:
                self._unknown.known(export_id)
            return
        error = self._unknown.seen(export_id, status, self._clock())
        self.stats.unknown_states[status.state_name] = self._unknown.counts[status.state_name]
        if error is not None:
            raise error

    async def _send(
        self,
        operation: Operation[Any, RecordT],
        request: Request,
        args: Any,
        attempts: int,
        *,
        watch: bool = False,
    ) -> RecordT:
        """Send ``request`` (retrying a ``TransientError`` up to ``attempts`` in all) and
        read its record; ``watch``: the record is an ``ExportStatus`` whose state is
        watched for unknown states."""
        if self._closed:
            raise self._closed_error()
        try:
            stats = self.stats
            resigns = 0
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
                            payload = await _read_body(response)
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
                received_at = self._clock()
                try:
                    record = operation.read(status, headers, payload, received_at, args=args)
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
                    decision = self._skew_decision(
                        error, signed_with=signed_with, received_at=received_at, resigns=resigns
                    )
                    if not decision.resign:
                        raise
                    resigns += 1
                    stats.clock_resyncs += decision.learnt
                    continue
                except ApiError as error:
                    error.scrub(self._hidden)  # a server may echo our request headers back
                    raise
                stats.succeeded += 1
                if watch:
                    state = record.state  # type: ignore[attr-defined]
                    if self._unknown.since or not isinstance(state, ExportState):
                        self._watch(args, record)  # type: ignore[arg-type]
                return record
        except TransientError:
            if attempts <= 1:
                raise
        return await self._retry(operation, request, args, attempts - 1, watch)

    async def _retry(
        self,
        operation: Operation[Any, RecordT],
        request: Request,
        args: Any,
        attempts: int,
        watch: bool,
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
                return await self._send(operation, request, args, 1, watch=watch)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
