"""The files of a download on disk: every one reached through its export's folder
(``dir_fd``), never through a link; the partial file and its note; the folder lock; and
the check that a recorded file is still what was verified. Blocking code, run in threads
by ``fetch.py`` (the lock waits without blocking the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ChecksumError, UnsafeFileError
from .extract import ExtractLimits, safe_extract
from .records import DownloadRecord
from .rules import BodyPlan, Expected, check_received, md5_of_etag

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["read_partial_note", "verify_record_on_disk"]

_HASH_CHUNK = 1024 * 1024
_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_NOTE_BYTES = 4096


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
