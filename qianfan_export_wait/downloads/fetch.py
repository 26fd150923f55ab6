"""``Downloader``: fetch each Done export's file, verified, resumable, never outside the
destination folder (the steps are told in the package's docstring); the retry schedule and
the transfer are here, the files on disk in ``files.py``, the decisions in ``rules.py``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base
from yarl import URL

from .._checks import check_count, check_number
from ..auth import Credentials
from ..endpoints import validate_base_url
from ..errors import (
    ApiError,
    ChecksumError,
    ConfigurationError,
    DownloaderClosedError,
    DownloadError,
    DownloadSourceError,
    DownloadTimeoutError,
    DownloadTooLargeError,
    LinkExpiredError,
    QianfanError,
    ThrottledError,
    TransferError,
    TransientError,
)
from ..models import ExportStatus
from .bos import bos_endpoint_from_env, get_object_headers, object_url
from .extract import ExtractLimits
from .files import (
    _extract_if_zip,
    _FolderLock,
    _hash_in_folder,
    _lstat_regular,
    _PartialFile,
    _prepare_folder,
)
from .records import DownloadProgress, DownloadRecord, ProgressHook, Refresh
from .rules import (
    OBJECT_CHANGED,
    Expected,
    LocalLink,
    Source,
    check_received,
    export_dir_name,
    file_name_for,
    link_expires_at,
    plan_body,
    source_for,
)

__all__ = ["Downloader"]

_READ_CHUNK = 256 * 1024
_STALL_BYTES = 64 * 1024
"""A transfer must move this many bytes (or end) within every ``stall_timeout``."""


def _proves(expected: Expected, have: tuple[int, bytes, str]) -> bool:
    """Whether the server's validators (an MD5 or SHA-256 at least) match a file's."""
    if expected.md5 is None and expected.sha256_hex is None:
        return False
    return check_received(expected, *have) is None


@dataclass(slots=True)
class _Job:
    """One export's download in progress: the latest status and where it points."""

    status: ExportStatus
    source: Source
    refresh: Refresh | None
    needs_refresh: bool = False
    have: tuple[int, bytes, str] | None = None
    """Size, MD5 and SHA-256 of a file already at the target, to be confirmed."""
    confirmed: bool = False


class Downloader:
    """Downloads Done exports' files into ``dest_dir``, at most ``max_concurrency`` at once.

    Use it as ``async with``; it owns an ``aiohttp.ClientSession`` unless given one (which
    it leaves open). ``credentials`` sign BOS requests for ``storage`` exports (at
    ``bos_endpoint``, default ``QIANFAN_BOS_ENDPOINT`` or ``https://bj.bcebos.com``);
    ``refresh`` polls a fresh status when a link is refused or expired (without it, that
    ends the download with ``LinkExpiredError``). ``max_attempts`` and ``retry_wait``
    bound the retries of one file. ``stall_timeout``: a transfer that moves less than
    64 KiB in that many seconds ends with ``DownloadTimeoutError``; ``max_bytes`` (default
    none) bounds a file's size. ``extract`` unpacks zip files (``safe_extract``). After
    ``aclose()`` every call raises ``DownloaderClosedError``.
    """

    def __init__(
        self,
        dest_dir: str | os.PathLike[str] | None = None,
        *,
        credentials: Credentials | None = None,
        session: aiohttp.ClientSession | None = None,
        refresh: Refresh | None = None,
        max_concurrency: int = 4,
        bos_endpoint: str | None = None,
        allow_insecure_http: bool = False,
        max_attempts: int = 8,
        retry_wait: wait_base | None = None,
        read_timeout: float = 60.0,
        stall_timeout: float = 60.0,
        max_bytes: int | None = None,
        extract: bool = False,
        extract_limits: ExtractLimits | None = None,
        on_progress: ProgressHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_count("max_concurrency", max_concurrency)
        check_count("max_attempts", max_attempts)
        check_number("read_timeout", read_timeout)
        check_number("stall_timeout", stall_timeout)
        if max_bytes is not None:
            check_count("max_bytes", max_bytes)
        self.dest_dir = None if dest_dir is None else Path(dest_dir)
        self.credentials = credentials
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
        self.stall_timeout = float(stall_timeout)
        self.max_bytes = max_bytes
        self.extract = extract
        self._bos_endpoint = validate_base_url(
            bos_endpoint or bos_endpoint_from_env(), allow_insecure_http=allow_insecure_http
        )
        self._allow_insecure_http = allow_insecure_http
        self._refresh = refresh
        self._retry_wait = retry_wait or wait_random_exponential(multiplier=0.2, max=5.0)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=read_timeout)
        self._extract_limits = extract_limits or ExtractLimits()
        self._on_progress = on_progress
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def bos_endpoint(self) -> str:
        """Where ``storage`` exports are fetched from, e.g. ``https://bj.bcebos.com``."""
        return str(self._bos_endpoint).rstrip("/")

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` was called."""
        return self._closed

    def __repr__(self) -> str:
        return (
            f"Downloader(dest_dir={str(self.dest_dir)!r}, max_concurrency="
            f"{self.max_concurrency}, bos_endpoint={self.bos_endpoint!r}, "
            f"credentials={self.credentials!r})"
        )

    async def __aenter__(self) -> Downloader:
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
        """Close the session if this downloader made it; later use raises
        ``DownloaderClosedError``. Closing twice is harmless."""
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DownloaderClosedError("the Downloader was used after aclose()")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency * 2),
                raise_for_status=False,
            )
            self._owns_session = True
        return self._session

    async def download(
        self,
        status: ExportStatus,
        dest_dir: str | os.PathLike[str] | None = None,
        *,
        extract: bool | None = None,
        refresh: Refresh | None = None,
        deadline: float | None = None,
    ) -> DownloadRecord:
        """Fetch ``status``'s file into ``dest_dir/<exportID>/`` (default: the downloader's
        folder) and return its record; raises only ``DownloadError`` subclasses (the
        cause chained). ``refresh`` replaces the downloader's own for this file;
        ``deadline`` (event-loop time, as ``asyncio.timeout_at``) ends it with
        ``DownloadTimeoutError``, its partial file kept for a later resume."""
        folder = Path(dest_dir) if dest_dir is not None else self.dest_dir
        if folder is None:
            raise ConfigurationError("no destination folder: pass dest_dir")
        try:
            self._ensure_session()
            async with asyncio.timeout_at(deadline) as budget:
                try:
                    async with self._slots:
                        return await self._download(
                            status,
                            folder,
                            self.extract if extract is None else extract,
                            refresh or self._refresh,
                        )
                except DownloadError:
                    raise
                except Exception as exc:  # OSError, BadZipFile, RecursionError, ValueError...
                    if isinstance(exc, TimeoutError) and budget.expired():
                        raise
                    raise DownloadError(f"{type(exc).__name__} while downloading: {exc}") from exc
        except DownloadError as error:
            if error.export_id is None:
                error.export_id = status.export_id
            raise
        except TimeoutError as exc:
            raise DownloadTimeoutError(
                "the caller's deadline passed before the file was in place",
                export_id=status.export_id,
                code="Deadline",
            ) from exc

    async def _download(
        self, status: ExportStatus, folder: Path, extract: bool, refresh: Refresh | None
    ) -> DownloadRecord:
        source = source_for(status, allow_insecure_http=self._allow_insecure_http)
        name = file_name_for(source, status.export_id)
        export_folder = folder / export_dir_name(status.export_id)
        final = export_folder / name
        try:
            await asyncio.to_thread(_prepare_folder, folder, export_folder)
        except OSError as exc:
            raise DownloadError(f"cannot create {export_folder}: {exc.strerror}") from exc
        async with _FolderLock(export_folder) as dir_fd:
            job = _Job(status, source, refresh)
            if await asyncio.to_thread(_lstat_regular, name, dir_fd, final) is not None:
                job.have = await asyncio.to_thread(_hash_in_folder, name, dir_fd, final)
            record = await self._fetch(job, _PartialFile(dir_fd, export_folder, name), final)
            if extract:
                unpacked = await asyncio.to_thread(_extract_if_zip, final, self._extract_limits)
                if unpacked is not None:
                    record = replace(record, extracted_to=str(unpacked))
        return record

    @staticmethod
    def _retryable(job: _Job) -> Callable[[BaseException], bool]:
        def retryable(error: BaseException) -> bool:
            if isinstance(error, LinkExpiredError):
                return job.refresh is not None
            if isinstance(error, DownloadTimeoutError):
                return False
            return isinstance(error, (TransferError, ChecksumError))

        return retryable

    async def _fetch(self, job: _Job, partial: _PartialFile, final: Path) -> DownloadRecord:
        """Fetch the file, or confirm the one at the target (``job.have``) against the
        server's validators; a target they do not confirm is replaced."""
        if job.have is None:
            await asyncio.to_thread(partial.load)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._retry_wait,
            retry=retry_if_exception(self._retryable(job)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    verified = await self._attempt(job, partial)
            if job.confirmed:
                await asyncio.to_thread(partial.tidy)
                size, sha256 = verified
                return DownloadRecord(job.status.export_id, str(final), size, sha256, fetched=False)
            await asyncio.to_thread(partial.finish, final.name)
        except (asyncio.CancelledError, DownloadTimeoutError):
            partial.close()  # kept, with its note, for the next run to resume
            raise
        except BaseException:
            partial.discard()
            raise
        size, sha256 = verified
        return DownloadRecord(job.status.export_id, str(final), size, sha256)

    async def _attempt(self, job: _Job, partial: _PartialFile) -> tuple[int, str]:
        """One GET of the rest of the file; the whole file's size and SHA-256 as read
        back from disk once it matches the server's validators."""
        if job.needs_refresh:
            job.status = await self._refreshed(job)
            job.source = source_for(job.status, allow_insecure_http=self._allow_insecure_http)
            job.needs_refresh = False
        url, headers = self._request_for(job, partial.offset)
        if partial.offset and partial.resume_etag is not None:
            headers["If-Match"] = partial.resume_etag
        elif job.have is not None and not partial.offset:
            headers["If-None-Match"] = f'"{job.have[1].hex()}"'
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as stall:
                stall.reschedule(loop.time() + self.stall_timeout)
                await self._stream(job, partial, url, headers, stall)
            if job.confirmed:
                assert job.have is not None
                return job.have[0], job.have[2]
        except TimeoutError as exc:
            if not stall.expired():
                raise
            raise DownloadTimeoutError(
                f"the transfer stalled: less than {_STALL_BYTES} bytes in "
                f"{self.stall_timeout:g} s, after {partial.offset} bytes",
                code="Stalled",
            ) from exc
        expected = partial.expected
        assert expected is not None
        if expected.size is not None and partial.offset < expected.size:
            raise TransferError(f"body ended after {partial.offset} of {expected.size} bytes")
        verified = await asyncio.to_thread(partial.verify)
        if isinstance(verified, ChecksumError):
            await asyncio.to_thread(partial.discard)
            raise verified
        return verified

    async def _stream(
        self,
        job: _Job,
        partial: _PartialFile,
        url: URL,
        headers: dict[str, str],
        stall: asyncio.Timeout,
    ) -> None:
        session = self._session or self._ensure_session()
        loop = asyncio.get_running_loop()
        try:
            async with session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
                skip_auto_headers=("Accept-Encoding",),
            ) as response:
                if response.status == 304 and "If-None-Match" in headers:
                    # The server's ETag is the MD5 of the file at the target.
                    job.confirmed = True
                    return
                try:
                    plan = plan_body(
                        response.status,
                        response.headers,
                        partial.offset,
                        is_link=isinstance(job.source, LocalLink),
                        known=(
                            Expected(None, partial.resume_etag, None, None)
                            if partial.offset
                            else None
                        ),
                    )
                except LinkExpiredError:
                    job.needs_refresh = True
                    raise
                except TransferError as error:
                    if error.code == OBJECT_CHANGED:
                        await asyncio.to_thread(partial.discard)
                    raise
                if job.have is not None and _proves(plan.expected, job.have):
                    job.confirmed = True  # the answer's validators match: body not needed
                    return
                size = plan.expected.size
                if self.max_bytes is not None and size is not None and size > self.max_bytes:
                    raise DownloadTooLargeError(
                        f"the file is {size} bytes, more than max_bytes={self.max_bytes}"
                    )
                partial.begin(plan)  # quick: an open and a small note
                on_progress = self._on_progress
                window = 0
                async for piece in response.content.iter_chunked(_READ_CHUNK):
                    partial.write(piece)
                    if self.max_bytes is not None and partial.offset > self.max_bytes:
                        raise DownloadTooLargeError(
                            f"the body went past max_bytes={self.max_bytes}; stopped"
                        )
                    window += len(piece)
                    if window >= _STALL_BYTES:
                        window = 0
                        stall.reschedule(loop.time() + self.stall_timeout)
                    if on_progress is not None:
                        on_progress(
                            DownloadProgress(job.status.export_id, len(piece), partial.offset, size)
                        )
        except aiohttp.ClientError as exc:
            raise TransferError(
                f"transfer broke after {partial.offset} bytes: {type(exc).__name__}"
            ) from exc
        except TimeoutError as exc:
            if stall.expired():
                raise
            raise TransferError(
                f"no data for {self._timeout.sock_read:g} s after {partial.offset} bytes"
            ) from exc
        except OSError as exc:
            raise DownloadError(f"cannot write {partial.part}: {exc.strerror}") from exc

    def _request_for(self, job: _Job, offset: int) -> tuple[URL, dict[str, str]]:
        source = job.source
        if isinstance(source, LocalLink):
            expires_at = link_expires_at(source.url)
            if expires_at is not None and expires_at <= self._clock():
                job.needs_refresh = True
                raise LinkExpiredError("the download link's signature has expired")
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            return source.url, headers
        if self.credentials is None:
            raise DownloadSourceError("a storage export needs credentials to sign GetObject")
        try:
            url, raw_path = object_url(self._bos_endpoint, source)
        except ConfigurationError as exc:
            raise DownloadSourceError(str(exc)) from exc
        headers = get_object_headers(
            self.credentials, url, raw_path, int(self._clock()), first_byte=offset or None
        )
        return url, headers

    async def _refreshed(self, job: _Job) -> ExportStatus:
        if job.refresh is None:  # pragma: no cover - not retried without refresh
            raise LinkExpiredError("the link expired and no refresh was given")
        status = job.status  # a V2 export's id is its string id (its export_id is 0)
        export_id = status.export_id_str if status.api == "v2" else status.export_id
        try:
            return await job.refresh(export_id or status.export_id)
        except (TransientError, ThrottledError) as exc:
            raise TransferError(f"could not poll for a fresh link yet: {exc}") from exc
        except (ApiError, QianfanError, ValueError) as exc:
            raise DownloadSourceError(f"polling for a fresh link failed: {exc}") from exc
