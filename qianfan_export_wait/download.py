"""``Downloader``: fetch each Done export's file, verified, resumable, never outside the
destination folder.

For one export, in order:

1. Where: ``downloadUrl`` for a ``local`` export (a presigned link, fetched as it is), a
   signed BOS ``GetObject`` of ``volumeId``/``exportPath`` for a ``storage`` one (see
   ``bos.py``). The file goes to ``dest_dir/<exportID>/<name>``, both names made safe
   (``download_rules.safe_name``). A file already there is complete (only a verified file
   is ever renamed into place): it is hashed, not fetched.
2. The export's folder is locked (``flock``) while its file is fetched, so two runs never
   write the same file at once.
3. The answer's status and headers are checked before a byte is written; the body streams
   into ``.<name>.part`` beside the target, hashed (MD5, SHA-256) on the way.
4. A transfer that breaks mid-body resumes from the bytes on disk with ``Range`` and
   ``If-Match`` (the ETag); a partial file left by a killed run is resumed the same way
   (its ETag is kept in ``.<name>.part.json``). A link that answers HTTP 403, or whose
   signature has expired, is replaced by polling the status again (``refresh``).
5. The size must equal ``Content-Length``, the MD5 ``Content-MD5`` or the ETag (when it is
   a plain MD5), the SHA-256 ``x-bce-content-sha256`` when sent. A mismatch drops the
   partial file: nothing unverified stays on disk.
6. ``fsync``, rename into place atomically, ``fsync`` the folder.

Retries follow a bounded tenacity schedule (``max_attempts``, ``retry_wait``). Downloads
go to storage, never to the rate-limited status API, except to refresh an expired link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base
from yarl import URL

from ._checks import check_count, check_number
from .auth import Credentials
from .bos import bos_endpoint_from_env, get_object_headers, object_url
from .download_rules import (
    OBJECT_CHANGED,
    BodyPlan,
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
from .errors import (
    ApiError,
    ChecksumError,
    ConfigurationError,
    DownloadError,
    DownloadSourceError,
    LinkExpiredError,
    QianfanError,
    ThrottledError,
    TransferError,
    TransientError,
)
from .extract import ExtractLimits, safe_extract
from .models import ExportId, ExportStatus

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DownloadProgress",
    "DownloadRecord",
    "Downloader",
    "ProgressHook",
    "Refresh",
]

_READ_CHUNK = 256 * 1024
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """A file on disk, verified: ``path``, ``bytes``, ``sha256`` (hex); ``fetched`` is
    ``False`` when it was already complete; ``extracted_to`` the folder a zip went to."""

    export_id: ExportId
    path: str
    bytes: int
    sha256: str
    fetched: bool = True
    extracted_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "bytes", "sha256"}`` (plus ``extracted_to`` when unpacked): the
        ``"file"`` object of a JSON line."""
        record: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.extracted_to is not None:
            record["extracted_to"] = self.extracted_to
        return record


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """Passed to ``on_progress`` for each piece written: ``received`` bytes just now,
    ``done`` bytes of the file on disk, ``total`` its size when known."""

    export_id: ExportId
    received: int
    done: int
    total: int | None


ProgressHook = Callable[[DownloadProgress], None]
"""Called in the event loop for every piece of every file; keep it quick."""

Refresh = Callable[[ExportId], Awaitable[ExportStatus]]
"""A fresh status for an export (e.g. ``ExportStatusClient.get_status``), for a new link."""


class _FolderLock:
    """An exclusive ``flock`` on a folder, waited for without blocking the event loop."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self._folder, os.O_RDONLY)
        delay = 0.01
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


class _PartialFile:
    """``.<name>.part`` and its ``.json`` note of what it is a prefix of; hashes what it holds."""

    def __init__(self, folder: Path, name: str) -> None:
        self.part = folder / f".{name}.part"
        self.note = folder / f".{name}.part.json"
        self.offset = 0
        self.expected: Expected | None = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._file: Any = None

    def load(self) -> None:
        """Take up a partial file a killed run left, if its note says what it is; else
        drop whatever is there. Blocking (hashes the bytes on disk)."""
        try:
            note = json.loads(self.note.read_text("utf-8"))
            etag = note["etag"]
            if not isinstance(etag, str) or not etag or not self.part.is_file():
                raise ValueError("nothing to resume")
            md5 = bytes.fromhex(note["md5"]) if note.get("md5") else None
            size = note.get("size")
            sha256 = note.get("sha256")
            expected = Expected(size if isinstance(size, int) else None, etag, md5, sha256 or None)
        except (OSError, ValueError, KeyError, TypeError):
            self.discard()
            return
        with open(self.part, "rb") as partial:
            while piece := partial.read(_HASH_CHUNK):
                self._md5.update(piece)
                self._sha256.update(piece)
                self.offset += len(piece)
        self.expected = expected

    def begin(self, plan: BodyPlan) -> None:
        """Prepare to append the body of an answer the plan accepted."""
        if plan.offset == 0 and self.offset:
            self.restart()
        self.expected = plan.expected
        if self._file is None:
            self._file = open(self.part, "ab")  # noqa: SIM115 - kept open across pieces
        if self.offset == 0 and plan.expected.etag:
            note = {
                "etag": plan.expected.etag,
                "size": plan.expected.size,
                "md5": plan.expected.md5.hex() if plan.expected.md5 else None,
                "sha256": plan.expected.sha256_hex,
            }
            self.note.write_text(json.dumps(note), "utf-8")

    def write(self, piece: bytes) -> None:
        """Append ``piece`` and hash it."""
        self._file.write(piece)
        self._md5.update(piece)
        self._sha256.update(piece)
        self.offset += len(piece)

    def verify(self) -> ChecksumError | None:
        """``None`` when the bytes held are the whole expected file."""
        assert self.expected is not None
        return check_received(
            self.expected, self.offset, self._md5.digest(), self._sha256.hexdigest()
        )

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the bytes held."""
        return self._sha256.hexdigest()

    def close(self) -> None:
        """Close the file, keeping it for a later resume."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def restart(self) -> None:
        """Drop the bytes held and start from byte 0."""
        self.discard()
        self.offset = 0
        self.expected = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()

    def discard(self) -> None:
        """Close and delete the partial file and its note."""
        self.close()
        for path in (self.part, self.note):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def finish(self, final: Path) -> None:
        """fsync, rename into place, fsync the folder, drop the note. Blocking."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self.close()
        os.replace(self.part, final)
        _fsync_folder(final.parent)
        with contextlib.suppress(FileNotFoundError):
            self.note.unlink()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as complete:
        while piece := complete.read(_HASH_CHUNK):
            digest.update(piece)
            size += len(piece)
    return size, digest.hexdigest()


@dataclass(slots=True)
class _Job:
    """One export's download in progress: the latest status and where it points."""

    status: ExportStatus
    source: Source
    refresh: Refresh | None
    needs_refresh: bool = False


class Downloader:
    """Downloads Done exports' files into ``dest_dir``, at most ``max_concurrency`` at once.

    Use it as ``async with``; it owns an ``aiohttp.ClientSession`` unless given one (which
    it leaves open). ``credentials`` sign BOS requests for ``storage`` exports (at
    ``bos_endpoint``, default ``QIANFAN_BOS_ENDPOINT`` or ``https://bj.bcebos.com``);
    ``refresh`` polls a fresh status when a link is refused or expired (without it, that
    ends the download with ``LinkExpiredError``). ``max_attempts`` and ``retry_wait``
    bound the retries of one file. ``extract`` unpacks zip files (``safe_extract``).
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
        extract: bool = False,
        extract_limits: ExtractLimits | None = None,
        on_progress: ProgressHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from .client import validate_base_url

        check_count("max_concurrency", max_concurrency)
        check_count("max_attempts", max_attempts)
        check_number("read_timeout", read_timeout)
        self.dest_dir = None if dest_dir is None else Path(dest_dir)
        self.credentials = credentials
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
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
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def bos_endpoint(self) -> str:
        """Where ``storage`` exports are fetched from, e.g. ``https://bj.bcebos.com``."""
        return str(self._bos_endpoint).rstrip("/")

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
        """Close the session if this downloader made it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
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
    ) -> DownloadRecord:
        """Fetch ``status``'s file into ``dest_dir/<exportID>/`` (default: the downloader's
        folder) and return its record; raises a ``DownloadError`` subclass. ``refresh``
        replaces the downloader's own for this file."""
        folder = Path(dest_dir) if dest_dir is not None else self.dest_dir
        if folder is None:
            raise ConfigurationError("no destination folder: pass dest_dir")
        try:
            async with self._slots:
                return await self._download(
                    status,
                    folder,
                    self.extract if extract is None else extract,
                    refresh or self._refresh,
                )
        except DownloadError as error:
            if error.export_id is None:
                error.export_id = status.export_id
            raise

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
            raise DownloadError(f"cannot create {export_folder}: {exc.strerror}") from None
        async with _FolderLock(export_folder):
            if await asyncio.to_thread(_is_regular_file, final):
                size, sha256 = await asyncio.to_thread(_sha256_of, final)
                record = DownloadRecord(status.export_id, str(final), size, sha256, fetched=False)
            else:
                job = _Job(status, source, refresh)
                record = await self._fetch(job, export_folder, name, final)
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
            return isinstance(error, (TransferError, ChecksumError))

        return retryable

    async def _fetch(
        self, job: _Job, export_folder: Path, name: str, final: Path
    ) -> DownloadRecord:
        partial = _PartialFile(export_folder, name)
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
                    await self._attempt(job, partial)
            await asyncio.to_thread(partial.finish, final)
        except asyncio.CancelledError:
            partial.close()  # kept, with its note, for the next run to resume
            raise
        except BaseException:
            partial.discard()
            raise
        return DownloadRecord(job.status.export_id, str(final), partial.offset, partial.sha256)

    async def _attempt(self, job: _Job, partial: _PartialFile) -> None:
        if job.needs_refresh:
            job.status = await self._refreshed(job)
            job.source = source_for(job.status, allow_insecure_http=self._allow_insecure_http)
            job.needs_refresh = False
        url, headers = self._request_for(job, partial.offset)
        if partial.offset and partial.expected is not None and partial.expected.etag:
            headers["If-Match"] = partial.expected.etag
        session = self._session or self._ensure_session()
        try:
            async with session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
                skip_auto_headers=("Accept-Encoding",),
            ) as response:
                try:
                    plan = plan_body(
                        response.status,
                        response.headers,
                        partial.offset,
                        is_link=isinstance(job.source, LocalLink),
                        known=partial.expected if partial.offset else None,
                    )
                except LinkExpiredError:
                    job.needs_refresh = True
                    raise
                except TransferError as error:
                    if error.code == OBJECT_CHANGED:
                        partial.restart()
                    raise
                partial.begin(plan)
                on_progress = self._on_progress
                total = plan.expected.size
                async for piece in response.content.iter_chunked(_READ_CHUNK):
                    partial.write(piece)
                    if on_progress is not None:
                        on_progress(
                            DownloadProgress(
                                job.status.export_id, len(piece), partial.offset, total
                            )
                        )
        except aiohttp.ClientError as exc:
            raise TransferError(
                f"transfer broke after {partial.offset} bytes: {type(exc).__name__}"
            ) from None
        except TimeoutError:
            raise TransferError(
                f"no data for {self._timeout.sock_read:g} s after {partial.offset} bytes"
            ) from None
        except OSError as exc:
            raise DownloadError(f"cannot write {partial.part}: {exc.strerror}") from None
        expected = partial.expected
        assert expected is not None
        if expected.size is not None and partial.offset < expected.size:
            raise TransferError(f"body ended after {partial.offset} of {expected.size} bytes")
        mismatch = partial.verify()
        if mismatch is not None:
            partial.restart()
            raise mismatch

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
        url, raw_path = object_url(self._bos_endpoint, source)
        headers = get_object_headers(
            self.credentials, url, raw_path, int(self._clock()), first_byte=offset or None
        )
        return url, headers

    async def _refreshed(self, job: _Job) -> ExportStatus:
        if job.refresh is None:  # pragma: no cover - not retried without refresh
            raise LinkExpiredError("the link expired and no refresh was given")
        try:
            return await job.refresh(job.status.export_id)
        except (TransientError, ThrottledError) as exc:
            raise TransferError(f"could not poll for a fresh link yet: {exc}") from None
        except (ApiError, QianfanError, ValueError) as exc:
            raise DownloadSourceError(f"polling for a fresh link failed: {exc}") from None


def _prepare_folder(folder: Path, export_folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if export_folder.is_symlink():
        raise DownloadSourceError(f"{export_folder} is a symbolic link; refusing to follow it")
    export_folder.mkdir(exist_ok=True)


def _extract_if_zip(path: Path, limits: ExtractLimits) -> Path | None:
    if not zipfile.is_zipfile(path):
        return None
    return safe_extract(path, None, limits, skip_existing=True)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
