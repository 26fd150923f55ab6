"""``Downloader``: fetch each Done export's file, verified, resumable, never outside the
destination folder.

For one export, in order:

1. Where: ``downloadUrl`` for a ``local`` export (a presigned link, fetched as it is), a
   signed BOS ``GetObject`` of ``volumeId``/``exportPath`` for a ``storage`` one (see
   ``bos.py``). The file goes to ``dest_dir/<exportID>/<name>``, both names made safe
   (``download_rules.safe_name``). A file already at the target is hashed and confirmed
   with ``If-None-Match`` (its MD5 as the ETag): HTTP 304, or an answer whose validators
   match it, keeps it unfetched; anything else fetches the whole file to replace it.
2. The export's folder is opened without following a link and locked (``flock``) while
   its file is fetched, so two runs never write the same file at once. Every file in it
   is reached through that folder (``dir_fd``) with ``lstat`` and ``O_NOFOLLOW``: a
   ``.part``, note or target that is a link, a fifo, a folder... is refused
   (``UnsafeFileError``), never followed or opened.
3. The answer's status and headers are checked before a byte is written; the body streams
   into ``.<name>.part`` beside the target. A transfer that moves less than 64 KiB in
   ``stall_timeout`` seconds, or passes the caller's ``deadline``, ends with
   ``DownloadTimeoutError``; a file over ``max_bytes`` with ``DownloadTooLargeError``.
4. A transfer that breaks mid-body resumes from the bytes on disk with ``Range`` and
   ``If-Match``: the ETag it began under is kept in ``.<name>.part.json``, and only a
   strong MD5 ETag is kept, so that the whole file can be proven against it. The bytes
   held are never believed: an answer whose own ETag is not that MD5 ETag starts again
   from byte 0. A link that answers HTTP 403, or whose signature has expired, is
   replaced by polling the status again (``refresh``).
5. The whole file is read back from disk and its size must equal ``Content-Length`` (or
   the ``Content-Range`` total), its MD5 ``Content-MD5`` or the ETag (when it is a plain
   MD5), its SHA-256 ``x-bce-content-sha256`` when sent: the server's validators, never
   the note's. A mismatch drops the partial file and fetches the whole file again. The
   record (size, SHA-256) is that of the bytes read back.
6. Rename into place atomically, check that what landed is the file verified, ``fsync``
   the folder.

Retries follow a bounded tenacity schedule (``max_attempts``, ``retry_wait``). Downloads
go to storage, never to the rate-limited status API, except to refresh an expired link.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import stat
import time
import zipfile
from collections.abc import Awaitable, Callable, Mapping
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
    md5_of_etag,
    plan_body,
    source_for,
)
from .endpoints import validate_base_url
from .errors import (
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
    UnsafeFileError,
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
    "read_partial_note",
    "verify_record_on_disk",
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


_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_NOTE_BYTES = 4096
_STALL_BYTES = 64 * 1024
"""A transfer must move this many bytes (or end) within every ``stall_timeout``."""


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _unsafe(path: Path | str, mode: int) -> UnsafeFileError:
    what = _kind_of(mode)
    verb = "follow" if stat.S_ISLNK(mode) else "open"
    return UnsafeFileError(f"{path} is {what}; refusing to {verb} it")


def _lstat_regular(name: str, dir_fd: int, shown: Path) -> os.stat_result | None:
    """``lstat`` of ``name`` in the folder: ``None`` when absent, ``UnsafeFileError`` when
    it is anything but a regular file (a link is never followed)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise _unsafe(shown, info.st_mode)
    return info


def _open_regular(name: str, flags: int, dir_fd: int, shown: Path, mode: int = 0o600) -> int:
    """Open ``name`` in the folder without following a link and without blocking on a
    fifo; the descriptor is checked to be a regular file."""
    try:
        fd = os.open(name, flags | _NO_FOLLOW, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{shown} is a symbolic link; refusing to follow it") from exc
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _unsafe(shown, info.st_mode)
    return fd


def _hash_fd(fd: int) -> tuple[int, bytes, str]:
    """Size, MD5 and SHA-256 (hex) of the bytes on disk behind ``fd``, read from byte 0."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    while piece := os.pread(fd, _HASH_CHUNK, size):
        md5.update(piece)
        sha256.update(piece)
        size += len(piece)
    return size, md5.digest(), sha256.hexdigest()


def read_partial_note(raw: bytes) -> str | None:
    """The ETag a ``.<name>.part.json`` note names, when it is a strong MD5 ETag (the only
    kind that can prove the bytes held); ``None`` for anything else. Pure; never raises."""
    if len(raw) > _MAX_NOTE_BYTES:
        return None
    try:
        note = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    etag = note.get("etag") if isinstance(note, dict) else None
    if not isinstance(etag, str) or len(etag) > 100 or md5_of_etag(etag) is None:
        return None
    return etag


class _FolderLock:
    """An exclusive ``flock`` on an export's folder, waited for without blocking the event
    loop; ``fd`` is the folder, opened without following a link, for ``dir_fd`` calls."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.fd = -1

    async def __aenter__(self) -> int:
        try:
            fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY | _NO_FOLLOW)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeFileError(
                    f"{self._folder} is not a plain folder (a link?); refusing to use it"
                ) from exc
            raise
        if fcntl is None:  # pragma: no cover
            self.fd = fd
            return fd
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
        self.fd = fd
        return fd

    async def __aexit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = -1


class _PartialFile:
    """``.<name>.part`` and its ``.json`` note (the ETag it was begun under), in a folder
    opened as ``dir_fd``. Its bytes are believed only once the whole file, read back from
    disk, matches the server's validators."""

    def __init__(self, dir_fd: int, folder: Path, name: str) -> None:
        self._dir_fd = dir_fd
        self._folder = folder
        self.part_name = f".{name}.part"
        self.note_name = f".{name}.part.json"
        self.part = folder / self.part_name
        self.offset = 0
        self.expected: Expected | None = None
        self.resume_etag: str | None = None
        self._fd: int | None = None

    def load(self) -> None:
        """Take up a partial file an earlier run left when its note names an MD5 ETag;
        drop it otherwise. ``UnsafeFileError`` when either is a link or not a regular
        file. Blocking."""
        part = _lstat_regular(self.part_name, self._dir_fd, self.part)
        note = _lstat_regular(self.note_name, self._dir_fd, self._folder / self.note_name)
        etag = None
        if part is not None and note is not None:
            fd = _open_regular(
                self.note_name, os.O_RDONLY, self._dir_fd, self._folder / self.note_name
            )
            try:
                etag = read_partial_note(os.read(fd, _MAX_NOTE_BYTES + 1))
            finally:
                os.close(fd)
        if etag is None:
            self.discard()
            return
        self._fd = _open_regular(self.part_name, os.O_RDWR | os.O_APPEND, self._dir_fd, self.part)
        self.offset = os.fstat(self._fd).st_size
        self.resume_etag = etag

    def begin(self, plan: BodyPlan) -> None:
        """Prepare to append the body of an answer the plan accepted. Blocking."""
        self.expected = plan.expected
        if plan.offset == 0 or self._fd is None:
            self.discard()
            self._fd = _open_regular(
                self.part_name,
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                self._dir_fd,
                self.part,
            )
            etag = plan.expected.etag
            if etag is not None and md5_of_etag(etag) is not None:
                note = json.dumps({"etag": etag, "size": plan.expected.size}).encode()
                fd = _open_regular(
                    self.note_name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                    self._dir_fd,
                    self._folder / self.note_name,
                )
                try:
                    os.write(fd, note)
                finally:
                    os.close(fd)
                self.resume_etag = etag

    def write(self, piece: bytes) -> None:
        """Append ``piece``."""
        assert self._fd is not None
        view = memoryview(piece)
        while view:
            view = view[os.write(self._fd, view) :]
        self.offset += len(piece)

    def verify(self) -> tuple[int, str] | ChecksumError:
        """fsync, then read the whole file back from disk: its size and SHA-256 when it is
        the file the server's validators describe, else the error. Blocking."""
        assert self.expected is not None and self._fd is not None
        os.fsync(self._fd)
        size, md5, sha256 = _hash_fd(self._fd)
        mismatch = check_received(self.expected, size, md5, sha256)
        return mismatch if mismatch is not None else (size, sha256)

    def close(self) -> None:
        """Close the file, keeping it and its note for a later resume."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and delete the partial file and its note (a link itself, never its
        target). Blocking."""
        self.close()
        self.offset = 0
        self.resume_etag = None
        for name in (self.part_name, self.note_name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._dir_fd)

    def finish(self, final_name: str) -> None:
        """Drop the note, rename into place, check that what landed is the file
        verified, fsync the folder. Blocking."""
        assert self._fd is not None
        # The note goes first: a run killed here leaves a .part without a note (dropped
        # next time), never a finished file beside a stale note.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.note_name, dir_fd=self._dir_fd)
        os.replace(self.part_name, final_name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        held = os.fstat(self._fd)
        landed = os.stat(final_name, dir_fd=self._dir_fd, follow_symlinks=False)
        if (held.st_dev, held.st_ino) != (landed.st_dev, landed.st_ino):
            os.unlink(final_name, dir_fd=self._dir_fd)
            raise UnsafeFileError(f"{self.part} was replaced while it was verified; nothing kept")
        self.close()
        os.fsync(self._dir_fd)

    def tidy(self) -> None:
        """Drop a stale partial file and note beside a confirmed target, if they can be
        dropped (a link goes, never its target). Blocking."""
        self.close()
        for name in (self.part_name, self.note_name):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dir_fd)


def _hash_in_folder(name: str, dir_fd: int, shown: Path) -> tuple[int, bytes, str]:
    fd = _open_regular(name, os.O_RDONLY, dir_fd, shown)
    try:
        return _hash_fd(fd)
    finally:
        os.close(fd)


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
        try:
            return await job.refresh(job.status.export_id)
        except (TransientError, ThrottledError) as exc:
            raise TransferError(f"could not poll for a fresh link yet: {exc}") from exc
        except (ApiError, QianfanError, ValueError) as exc:
            raise DownloadSourceError(f"polling for a fresh link failed: {exc}") from exc


def _prepare_folder(folder: Path, export_folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        info = os.lstat(export_folder)
    except FileNotFoundError:
        export_folder.mkdir(exist_ok=True)
        return
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFileError(
            f"{export_folder} is {_kind_of(info.st_mode)}, not a folder; refusing to use it"
        )


def _extract_if_zip(path: Path, limits: ExtractLimits) -> Path | None:
    if not zipfile.is_zipfile(path):
        return None
    return safe_extract(path, None, limits, skip_existing=True)


def verify_record_on_disk(
    folder: str | os.PathLike[str], record: DownloadRecord | Mapping[str, Any]
) -> bool:
    """Whether a download record (a ``DownloadRecord`` or a JSON line's ``"file"`` object:
    ``path``, ``bytes``, ``sha256``) still names a regular file inside ``folder``, reached
    through no symbolic link, with that size and SHA-256. Blocking (hashes the file);
    never raises for a bad record or path, it answers ``False``."""
    if isinstance(record, DownloadRecord):
        path_text: object = record.path
        size: object = record.bytes
        sha256: object = record.sha256
    elif isinstance(record, Mapping):
        path_text, size, sha256 = record.get("path"), record.get("bytes"), record.get("sha256")
    else:
        return False
    if (
        not isinstance(path_text, str)
        or not isinstance(size, int)
        or isinstance(size, bool)
        or not isinstance(sha256, str)
    ):
        return False
    try:
        root = Path(os.path.abspath(folder))
        target = Path(os.path.abspath(path_text))
        parts = target.relative_to(root).parts
        if not parts or ".." in parts:
            return False
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NO_FOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            file_fd = _open_regular(parts[-1], os.O_RDONLY, fd, target)
        finally:
            os.close(fd)
        try:
            if os.fstat(file_fd).st_size != size:
                return False
            _, _, actual = _hash_fd(file_fd)
        finally:
            os.close(file_fd)
    except (OSError, ValueError, UnsafeFileError):
        return False
    return actual == sha256.lower()
