"""``ExportStatusClient``: one signed status request over aiohttp, classified into a result
or an error. The only module that talks to the network."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

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
from ._json import loads as json_loads
from .auth import Credentials, canonical_time, sign
from .download import Downloader, DownloadRecord, ProgressHook
from .download_rules import is_loopback_host
from .errors import (
    ApiError,
    AuthError,
    ClientClosedError,
    ConfigurationError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
    UnexpectedAnswerError,
    classify_response,
    tls_error,
)
from .models import (
    ExportId,
    ExportStatus,
    describe_value,
    parse_export_status,
    validate_export_id,
)

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "EXPORT_STATUS_PATH",
    "MAX_CLOCK_OFFSET",
    "MAX_RESPONSE_BYTES",
    "ClientStats",
    "ExportStatusClient",
    "host_header",
    "status_request_headers",
    "validate_base_url",
]

logger = logging.getLogger("qianfan_export_wait")

BASE_URL_ENV = "QIANFAN_CONSOLE_API_BASE_URL"
DEFAULT_BASE_URL = "https://qianfan.baidubce.com"
EXPORT_STATUS_PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"
MAX_RESPONSE_BYTES = 1024 * 1024
SIGNATURE_EXPIRATION_SECONDS = 1800
SIGNED_HEADERS = ("content-type", "host", "x-bce-date")
_CONTENT_TYPE = "application/json"
_SKEW_THRESHOLD_SECONDS = 30.0
MAX_CLOCK_OFFSET = 86400.0
"""A server ``Date`` further than this from the local clock is never adopted."""
_MAX_RESIGNS = 3
DEFAULT_CONNECTION_LIMIT = 100
_USERINFO = re.compile(r"^([^/?#]*//)?[^/?#@]*@")


def validate_base_url(value: str, *, allow_insecure_http: bool = False) -> URL:
    """Check an endpoint such as ``https://qianfan.baidubce.com`` and return it as a URL.

    Raises ``ConfigurationError`` for a missing scheme or host, a path, a query, embedded
    credentials, or plain ``http`` to a host other than loopback (unless allowed).
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"endpoint {value!r} is empty; expected e.g. {DEFAULT_BASE_URL}")
    text = value.strip()
    # Messages echo the endpoint, so any user:password@ in it is masked first.
    shown = _USERINFO.sub(r"\1***@", text)
    if shown != text:
        raise ConfigurationError(
            f"endpoint {shown!r} must not carry credentials (user:password@); "
            "use QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY"
        )
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"endpoint {text!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"endpoint {text!r} needs a scheme and a host, e.g. {DEFAULT_BASE_URL}"
        )
    if url.user is not None or url.password is not None:
        raise ConfigurationError(
            "endpoint must not carry credentials (user:password@); "
            "use QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY"
        )
    # yarl folds dot segments away ("/a/.." becomes "/"), so look at the text as given too.
    given_path = urllib.parse.urlsplit(text).path
    if (
        url.raw_path not in ("", "/")
        or given_path not in ("", "/")
        or url.raw_query_string
        or url.raw_fragment
    ):
        raise ConfigurationError(
            f"endpoint {text!r} has a path, query or fragment; expected only scheme://host[:port]"
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.host):
        raise ConfigurationError(
            f"endpoint {text!r} uses plain http to a non-loopback host; use https, or allow "
            "it with --insecure-http (allow_insecure_http=True in Python)"
        )
    return url.with_path("/")


def status_request_headers(
    credentials: Credentials,
    host: str,
    timestamp: str | int | float | datetime | None = None,
    *,
    expiration_seconds: int = SIGNATURE_EXPIRATION_SECONDS,
    headers_to_sign: tuple[str, ...] | None = SIGNED_HEADERS,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of one signed status ``POST`` to ``host`` (``name[:port]``): the one
    place a status request's headers are built. ``timestamp`` defaults to now."""
    signed_at = canonical_time(timestamp)
    headers = {"Host": host, "Content-Type": _CONTENT_TYPE, **(extra_headers or {})}
    headers["x-bce-date"] = signed_at
    headers["Authorization"] = sign(
        credentials,
        method="POST",
        path=EXPORT_STATUS_PATH,
        headers=headers,
        timestamp=signed_at,
        expiration_seconds=expiration_seconds,
        headers_to_sign=headers_to_sign,
    )
    return headers


def host_header(url: URL) -> str:
    """The ``Host`` value for ``url``: the host, bracketed if IPv6, with a non-default port."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def _string_id_body(export_id: ExportId) -> bytes:
    return json.dumps({"exportID": export_id}, ensure_ascii=False).encode("utf-8")


def _parse_success(payload: bytes, export_id: ExportId) -> ExportStatus | None:
    """The status in a normal answer's body, or ``None`` when the body needs a closer look
    (not JSON, an error code, another shape or another export): ``_interpret`` then says
    what is wrong."""
    try:
        decoded = json_loads(payload)
    except (ValueError, RecursionError):
        return None
    if type(decoded) is not dict or "error_code" in decoded:
        return None
    try:
        record = parse_export_status(decoded)
    except ResponseFormatError:
        return None
    return record if record.matches(export_id) else None


def _transport_error(exc: BaseException, client: ExportStatusClient) -> ApiError | None:
    """What a failed exchange amounts to (``None``: not a transport failure)."""
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


class ExportStatusClient:
    """Async client for the export-status API: ``await client.get_status(export_id)``.

    Use it as ``async with``. It owns one ``aiohttp.ClientSession`` unless given one (which
    it then leaves open), reuses connections, signs every request with ``bce-auth-v1``, and
    retries ``TransientError`` a few times on a jittered exponential backoff (tenacity).

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
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigurationError(
                f"credentials must be a Credentials, got {type(credentials).__name__}"
            )
        check_number("request_timeout", request_timeout)
        check_count("max_attempts", max_attempts)
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = validate_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._url = self._base_url.with_path(EXPORT_STATUS_PATH)
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
        self._headers: dict[str, str] = {}
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
        return f"ExportStatusClient(base_url={self.base_url!r}, credentials={self.credentials!r})"

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

    def _signed_headers(self) -> dict[str, str]:
        # The body is not signed, so one Authorization value serves every request
        # signed within the same second; formatting the date is skipped until it changes.
        second = int(self._clock() + self._clock_offset)
        if second != self._signed_second:
            self._headers = status_request_headers(self.credentials, self._host, second)
            self._signed_second = second
        return self._headers

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
        return self._fetch(validate_export_id(export_id), self.max_attempts)

    def fetch_once(self, export_id: ExportId) -> Coroutine[Any, Any, ExportStatus]:
        """One request, no transient retry (the waiter schedules its own); ``export_id``
        must already be valid.

        On ``RequestExpired`` it signs again and resends: with the offset another request
        learnt meanwhile, if any, else with one learnt from this answer's ``Date``.
        """
        return self._fetch(export_id, 1)

    async def _fetch(self, export_id: ExportId, attempts: int) -> ExportStatus:
        if self._closed:
            raise self._closed_error()
        try:
            # One coroutine from here to the socket: on the usual path (HTTP 200 with a sized,
            # well-formed body) nothing else is awaited, called twice or classified.
            stats = self.stats
            resends = 0
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
                        self._url,
                        data=b'{"exportID":%d}' % export_id
                        if type(export_id) is int
                        else _string_id_body(export_id),
                        headers=self._signed_headers(),
                        timeout=self._timeout,
                        allow_redirects=False,
                    ) as response:
                        status = response.status
                        headers = response.headers
                        length = response.content_length
                        if (
                            status == 200
                            and length is not None
                            and length <= MAX_RESPONSE_BYTES
                            and "Content-Encoding" not in headers
                            and "X-Bce-Error-Code" not in headers
                        ):
                            payload = await response.read()
                            record = _parse_success(payload, export_id)
                            if record is not None:
                                stats.succeeded += 1
                                return record
                        else:
                            payload = await self._read_body(response)
                except ApiError as error:  # from _read_body: too large
                    stats.transient_errors += isinstance(error, TransientError)
                    raise
                except Exception as exc:
                    if self._closed:  # closed while this request was in flight
                        raise self._closed_error() from exc
                    failure = _transport_error(exc, self)
                    if failure is None:
                        raise
                    failure.scrub(self._hidden)  # a reason phrase is the server's text
                    stats.transient_errors += isinstance(failure, TransientError)
                    raise failure from None
                finally:
                    slots.give_back()
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "POST %s exportID=%r -> HTTP %d", self._url.path, export_id, status
                    )
                try:
                    record = self._interpret(export_id, status, payload, headers)
                except ThrottledError:
                    stats.throttled += 1
                    raise
                except TransientError:
                    stats.transient_errors += 1
                    raise
                except AuthError as error:
                    resends += 1
                    if error.bce_error_code != "RequestExpired" or resends > _MAX_RESIGNS:
                        raise
                    if self._clock_offset == signed_with:
                        if not self._learn_clock_offset(error):
                            raise
                        stats.clock_resyncs += 1
                    continue
                stats.succeeded += 1
                return record
        except TransientError:
            if attempts <= 1:
                raise
        return await self._retry(export_id, attempts - 1)

    async def _retry(self, export_id: ExportId, attempts: int) -> ExportStatus:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._retry_wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.stats.retries += 1
                return await self._fetch(export_id, 1)
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

    def _interpret(
        self, export_id: ExportId, status: int, payload: bytes, headers: Any
    ) -> ExportStatus:
        try:
            return self._classify(export_id, status, payload, headers)
        except ApiError as error:
            error.scrub(self._hidden)  # a server may echo our request headers back
            raise

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

    def _classify(
        self, export_id: ExportId, status: int, payload: bytes, headers: Any
    ) -> ExportStatus:
        decoded: Any = None
        decode_problem: str | None = None
        if payload:
            try:
                decoded = json_loads(payload)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                decode_problem = f"response body is not JSON ({type(exc).__name__})"
        body = decoded if isinstance(decoded, dict) else None
        error = classify_response(status, body, headers)
        if error is None and 300 <= status < 400:
            error = ApiError(
                f"unexpected redirect (HTTP {status}) not followed", http_status=status
            )
        if error is not None:
            raise error
        if decode_problem is not None or not payload:
            raise ResponseFormatError(
                decode_problem or "response body is empty", http_status=status
            )
        try:
            record = parse_export_status(decoded)
        except ResponseFormatError as exc:
            exc.http_status = status
            raise
        if not record.matches(export_id):
            raise UnexpectedAnswerError(
                f"answer is for export {describe_value(record.export_id)}/"
                f"{describe_value(record.export_id_str)}, not {describe_value(export_id)}",
                asked=export_id,
                answered=record.export_id if type(export_id) is int else record.export_id_str,
                log_id=record.log_id,
                http_status=status,
            )
        return record
