"""The files a simulated Done export serves: deterministic bytes per export id, made on the
fly in 64 KiB blocks, so a file of tens of megabytes costs no memory and any byte range
can be produced without the bytes before it. Pure: no I/O, no clock.

A ``csv`` file is a header line naming the export, then lines of 64 bytes
(``<10-digit line number>,<52 hex characters>\\n``). A ``zip`` file is a real zip archive
(stored, not compressed) holding one such CSV, with honest CRC-32 and sizes, so ``--extract``
has something real to unpack.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

__all__ = ["BLOCK_BYTES", "FileDigest", "FileKind", "SimFile", "file_kind_for", "file_size_for"]

FileKind = Literal["csv", "zip"]
BLOCK_BYTES = 64 * 1024
_LINE_BYTES = 64
_PAGE_COUNT = 16
_ZIP_STORED = 0
_ZIP_VERSION = 20
_ZIP_DATE = (0, 33)  # 1980-01-01 00:00, the zip epoch: the same bytes on every run


@lru_cache(maxsize=1)
def _pages() -> tuple[bytes, ...]:
    """16 blocks of CSV lines (1 MiB in all); every file's body is a seeded walk over them."""
    rng = random.Random("qianfan-export-wait:sim-pages")
    lines_per_block = BLOCK_BYTES // _LINE_BYTES
    pages = []
    for page in range(_PAGE_COUNT):
        digits = rng.randbytes(26 * lines_per_block).hex().encode("ascii")
        pages.append(
            b"".join(
                b"%010d,%s\n" % (page * lines_per_block + line, digits[line * 52 : line * 52 + 52])
                for line in range(lines_per_block)
            )
        )
    return tuple(pages)


def file_kind_for(export_id: int) -> FileKind:
    """Every third export (ids divisible by 3) is a zip, the others a csv."""
    return "zip" if export_id % 3 == 0 else "csv"


def file_size_for(export_id: int, seed: int, low: int, high: int) -> int:
    """A seeded size in [``low``, ``high``] bytes, log-uniform (as many KB files as MB ones)."""
    if low >= high:
        return low
    rng = random.Random(f"{seed}:file-size:{export_id}")
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What the storage knows of a file: its size, MD5 (the ETag) and SHA-256."""

    size: int
    md5_hex: str
    sha256_hex: str


class _Body:
    """The CSV text: a header line, then whole blocks picked from the pages by a seeded walk."""

    __slots__ = ("_header", "_start", "_step", "size")

    def __init__(self, export_id: int, seed: int, size: int) -> None:
        self._header = f"line,score_of_export_{export_id}\n".encode("ascii")
        rng = random.Random(f"{seed}:file-body:{export_id}")
        self._start = rng.randrange(_PAGE_COUNT)
        self._step = rng.randrange(1, _PAGE_COUNT, 2)  # odd: the walk visits every page
        self.size = max(size, len(self._header))

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes [``start``, ``end``) in pieces of at most one block."""
        pages = _pages()
        header = self._header
        position = start
        while position < end:
            if position < len(header):
                piece = header[position : min(end, len(header))]
            else:
                offset = position - len(header)
                block, within = divmod(offset, BLOCK_BYTES)
                page = pages[(self._start + block * self._step) % _PAGE_COUNT]
                piece = page[within : within + min(BLOCK_BYTES - within, end - position)]
            yield piece
            position += len(piece)


class SimFile:
    """One export's file: ``name``, ``kind``, ``size``, and its bytes by range."""

    __slots__ = ("_body", "_digest", "_segments", "export_id", "kind", "name", "size")

    def __init__(self, export_id: int, name: str, kind: FileKind, size: int, seed: int) -> None:
        self.export_id = export_id
        self.name = name
        self.kind: FileKind = kind
        self._digest: FileDigest | None = None
        member = name.rsplit(".", 1)[0] + ".csv"
        if kind == "csv":
            self._body = _Body(export_id, seed, size)
            self._segments: tuple[bytes | None, ...] = (None,)
        else:
            overhead = 30 + 46 + 2 * len(member) + 22
            self._body = _Body(export_id, seed, max(size - overhead, 1))
            crc = 0
            for piece in self._body.iter_range(0, self._body.size):
                crc = zlib.crc32(piece, crc)
            self._segments = _zip_segments(member.encode("ascii"), self._body.size, crc)
        self.size = sum(self._body.size if part is None else len(part) for part in self._segments)

    def __repr__(self) -> str:
        return f"SimFile(export_id={self.export_id}, name={self.name!r}, size={self.size})"

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [``start``, ``end``) (default: to the end), at most 64 KiB a piece."""
        end = self.size if end is None else min(end, self.size)
        segment_start = 0
        for part in self._segments:
            length = self._body.size if part is None else len(part)
            low, high = max(start, segment_start), min(end, segment_start + length)
            if low < high:
                if part is None:
                    yield from self._body.iter_range(low - segment_start, high - segment_start)
                else:
                    yield part[low - segment_start : high - segment_start]
            segment_start += length

    def digest(self) -> FileDigest:
        """Size, MD5 and SHA-256 of the whole file (computed once, by streaming)."""
        if self._digest is None:
            md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
            for piece in self.iter_range():
                md5.update(piece)
                sha256.update(piece)
            self._digest = FileDigest(self.size, md5.hexdigest(), sha256.hexdigest())
        return self._digest


def _zip_segments(member: bytes, size: int, crc: int) -> tuple[bytes | None, ...]:
    """Local header, ``None`` where the body goes, central directory and end record."""
    if size >= 0xFFFFFFFF:
        raise ValueError("simulated zip files stay under 4 GiB (no zip64)")
    time_, date = _ZIP_DATE
    local = struct.pack(
        "<4sHHHHHIIIHH",
        b"PK\x03\x04",
        _ZIP_VERSION,
        0,
        _ZIP_STORED,
        time_,
        date,
        crc,
        size,
        size,
        len(member),
        0,
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        _ZIP_VERSION,
        _ZIP_VERSION,
        0,
        _ZIP_STORED,
        time_,
        date,
        crc,
        size,
        size,
        len(member),
        0,
        0,
        0,
        0,
        0o100644 << 16,
        0,
    )
    central_offset = len(local) + len(member) + size
    central_size = len(central) + len(member)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, central_size, central_offset, 0)
    return (local + member, None, central + member + end)
