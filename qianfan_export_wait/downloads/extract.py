"""``safe_extract``: unpack a downloaded zip without trusting it.

Every member is checked against the central directory before a byte is written: no
absolute path, drive letter or ``..`` part, no link or device (only files and folders),
no duplicate name, no encrypted member; at most ``max_files`` members, ``max_bytes`` in
all, and no member over 1 MiB that expands more than ``max_ratio`` times (a zip bomb).
The bytes actually inflated are counted too, so a header that lies about a size changes
nothing. Members go to a temporary folder beside the target, which is renamed into place
once all are written; on any refusal the temporary folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UnsafeArchiveError

__all__ = ["ExtractLimits", "check_member_name", "safe_extract"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_RATIO_FLOOR_BYTES = 1024 * 1024
_COPY_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """How much one zip may unpack to: members, bytes in all, and the expansion ratio of a
    member over 1 MiB."""

    max_files: int = 10_000
    max_bytes: int = 4 * 1024**3
    max_ratio: float = 100.0


def check_member_name(name: str) -> tuple[str, ...]:
    """The path parts of a member name, or ``UnsafeArchiveError`` if it could land
    outside the folder (absolute, a drive letter, ``..``, control characters)."""
    if not name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise UnsafeArchiveError(f"zip member {name!r} has an empty or control-character name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafeArchiveError(f"zip member {name!r} has an absolute path")
    parts = tuple(part for part in PurePosixPath(unified).parts if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"zip member {name!r} climbs out of the folder with '..'")
    if not parts:
        raise UnsafeArchiveError(f"zip member {name!r} names no file")
    return parts


def _member_kind(info: zipfile.ZipInfo) -> str:
    file_type = stat.S_IFMT(info.external_attr >> 16)  # 0: made where types are not kept
    if file_type == stat.S_IFLNK:
        raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"zip member {info.filename!r} is not a regular file")
    return "dir" if info.is_dir() or file_type == stat.S_IFDIR else "file"


def _check(members: list[zipfile.ZipInfo], limits: ExtractLimits) -> None:
    if len(members) > limits.max_files:
        raise UnsafeArchiveError(
            f"zip holds {len(members)} members, more than the limit of {limits.max_files}"
        )
    total = 0
    seen: set[tuple[str, ...]] = set()
    for info in members:
        parts = check_member_name(info.filename)
        _member_kind(info)
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"zip member {info.filename!r} is encrypted")
        if parts in seen:
            raise UnsafeArchiveError(f"zip member {info.filename!r} appears twice")
        seen.add(parts)
        total += info.file_size
        if info.file_size > _RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise UnsafeArchiveError(
                    f"zip member {info.filename!r} expands {ratio:.0f} times "
                    f"({info.compress_size} to {info.file_size} bytes): a zip bomb?"
                )
    if total > limits.max_bytes:
        raise UnsafeArchiveError(
            f"zip unpacks to {total} bytes, more than the limit of {limits.max_bytes}"
        )


def safe_extract(
    zip_path: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None = None,
    limits: ExtractLimits | None = None,
    *,
    skip_existing: bool = False,
) -> Path:
    """Unpack ``zip_path`` into ``dest`` (default: beside it, named after it without
    ``.zip``) and return ``dest``. Blocking; ``UnsafeArchiveError`` when refused.

    ``dest`` must not exist yet; with ``skip_existing`` an existing ``dest`` is taken as
    an earlier complete unpacking and returned as it is.
    """
    source = Path(zip_path)
    limits = limits or ExtractLimits()
    target = Path(dest) if dest is not None else source.with_name(_folder_name(source.name))
    if target.exists() or target.is_symlink():
        if skip_existing and target.is_dir() and not target.is_symlink():
            return target
        raise UnsafeArchiveError(f"{target} already exists; not unpacking over it")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchiveError(f"{source.name} is not a readable zip: {exc}") from None
    with archive:
        members = archive.infolist()
        _check(members, limits)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _unpack(archive, members, staging, limits)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _folder_name(file_name: str) -> str:
    stem = file_name[:-4] if file_name.lower().endswith(".zip") else f"{file_name}.d"
    return stem or "unzipped"


def _unpack(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path, limits: ExtractLimits
) -> None:
    written = 0
    for info in members:
        try:
            written = _unpack_member(archive, info, staging, limits, written)
        except UnsafeArchiveError:
            raise
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError) as exc:
            raise UnsafeArchiveError(
                f"zip member {info.filename!r} cannot be unpacked: {type(exc).__name__}: {exc}"
            ) from exc


def _unpack_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    staging: Path,
    limits: ExtractLimits,
    written: int,
) -> int:
    """Write one member; the bytes written in all so far, this member's included."""
    path = staging.joinpath(*check_member_name(info.filename))
    if _member_kind(info) == "dir":
        path.mkdir(parents=True, exist_ok=True)
        return written
    path.parent.mkdir(parents=True, exist_ok=True)
    member_bytes = 0
    with archive.open(info) as packed, open(path, "xb") as unpacked:
        while piece := packed.read(_COPY_CHUNK):
            member_bytes += len(piece)
            written += len(piece)
            if member_bytes > info.file_size or written > limits.max_bytes:
                raise UnsafeArchiveError(
                    f"zip member {info.filename!r} inflates past its declared size "
                    "or the byte limit"
                )
            unpacked.write(piece)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o644)
    return written
