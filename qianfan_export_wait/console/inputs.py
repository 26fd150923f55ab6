"""What the user hands the command line besides options: ids (arguments, ``--ids-file``)
and an earlier run's JSON lines (``--resume``). Everything here is read before any
request, and every problem is a ``UsageError`` naming the flag, the file and the line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ..models import (
    MAX_EXPORT_ID_LENGTH,
    MAX_INT_EXPORT_ID,
    ExportId,
    id_file_lines,
    parse_export_id,
    validate_export_id,
)
from .exits import UsageError

__all__ = [
    "FINAL_OUTCOMES",
    "MAX_RESUME_LINE",
    "EarlierRun",
    "FinalRecords",
    "file_in_place",
    "gather_ids",
    "read_earlier_run",
    "read_ids_file",
]

FINAL_OUTCOMES = ("done", "failed")
"""Outcomes a resumed run takes as they are, without asking again."""


def gather_ids(arguments: Sequence[str], ids_file: str | None, stdin: TextIO) -> list[ExportId]:
    """The ids of the arguments, then of ``--ids-file``, each once, in that order."""
    ids: dict[ExportId, None] = {}
    for position, text in enumerate(arguments, 1):
        try:
            ids[parse_export_id(text)] = None
        except ValueError as exc:
            raise UsageError(f"argument {position}: {exc}") from None
    if ids_file is not None:
        ids.update(dict.fromkeys(read_ids_file(ids_file, stdin)))
    return list(ids)


def read_ids_file(path: str, stdin: TextIO) -> Iterator[ExportId]:
    """The ids in the file at ``path`` (``-``: stdin), one a line (see
    ``models.id_file_lines``); read line by line, so a large file never sits in memory
    as text as well as ids."""
    if path == "-":
        buffer: BinaryIO | None = getattr(stdin, "buffer", None)
        if buffer is not None:
            yield from _parse_blocks("--ids-file -", buffer)
        else:
            yield from _parse_lines("--ids-file -", _binary_lines(stdin))
        return
    try:
        with open(path, "rb") as stream:
            yield from _parse_blocks(f"--ids-file {path}", stream)
    except FileNotFoundError:
        raise UsageError(f"--ids-file {path!r} does not exist") from None
    except OSError as exc:
        raise UsageError(f"--ids-file {path!r} cannot be read: {exc.strerror or exc}") from None


def _binary_lines(stream: TextIO) -> Iterable[bytes]:
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    if buffer is not None:
        return buffer
    return (line.encode("utf-8", "surrogateescape") for line in stream)


_MAX_DIGITS = len(str(MAX_INT_EXPORT_ID))
_PLAIN_STR_ID = re.compile(rb"[A-Za-z_][!-\"$-~]{0,%d}" % (MAX_EXPORT_ID_LENGTH - 1))
"""A line that is a string id as it stands: a letter first (so never a number), then
printable ASCII with no space, no ``#`` and no CR, within the length limit."""


_BLOCK_BYTES = 1 << 20
_PLAIN_INT_LINES = re.compile(rb"(?:[1-9][0-9]{0,17}\n)*")
"""Lines that are each an int id as it stands: no leading zero, at most 18 digits (so
within 2**63-1), LF-terminated."""


def _parse_blocks(where: str, stream: BinaryIO) -> Iterator[ExportId]:
    """``_parse_lines`` over ``stream`` read a block at a time: a block of plain int lines
    (the usual file) is checked by one regular expression and converted at C speed (a
    million ids in a fraction of a second); any other block goes line by line."""
    number = 1
    rest = b""
    while True:
        block = stream.read(_BLOCK_BYTES)
        if not block:
            if rest:
                yield from _parse_lines(where, (rest,), first=number)
            return
        block = rest + block
        cut = block.rfind(b"\n") + 1
        block, rest = block[:cut], block[cut:]
        if not block:
            continue
        lines = block.count(b"\n")
        if _PLAIN_INT_LINES.fullmatch(block):
            yield from map(int, block.split())
        else:
            # Split on LF alone, as reading line by line does (a lone CR stays in its line);
            # a line without its LF reads the same.
            yield from _parse_lines(where, block.split(b"\n")[:-1], first=number)
        number += lines


def _parse_lines(where: str, lines: Iterable[bytes], *, first: int = 1) -> Iterator[ExportId]:
    try:
        for number, raw in enumerate(lines, first):
            # The usual line, plain digits and a newline, is read at once (a million
            # lines in well under a second); any other goes through the full rule.
            digits = raw[:-1] if raw[-1:] == b"\n" else raw
            if digits.isdigit() and digits[:1] != b"0" and len(digits) < _MAX_DIGITS:
                yield int(digits)
                continue
            if _PLAIN_STR_ID.fullmatch(digits):  # the usual exportIDStr, "amemt-..."
                yield digits.decode("ascii")
                continue
            for _, text in id_file_lines((raw,), first=number):
                try:
                    yield parse_export_id(text)
                except ValueError as exc:
                    raise UsageError(f"{where}:{number}: {exc}") from None
    except ValueError as exc:  # a line that is not UTF-8
        raise UsageError(f"{where} cannot be read: {exc}") from None


MAX_RESUME_LINE = 1 << 20
"""The longest line ``--resume`` reads (bytes, newline included); a longer one is an error
naming it, so a hostile or wrong file cannot fill memory with one line."""


class FinalRecords(Mapping[ExportId, dict[str, Any]]):
    """The final records of an earlier run, by export id: only where each line starts is
    held, and a record is read from the file again when it is asked for, so memory grows
    with the ids, not with the size of their records. A line that no longer holds its
    record (the file changed since) reads as missing: that export is waited for again."""

    def __init__(self, path: str, offsets: dict[ExportId, int]) -> None:
        self._path = path
        self._offsets = offsets
        self._stream: BinaryIO | None = None

    def __getitem__(self, export_id: ExportId) -> dict[str, Any]:
        offset = self._offsets[export_id]
        try:
            if self._stream is not None:
                raw = self._read(self._stream, offset)
            else:
                with open(self._path, "rb") as stream:
                    raw = self._read(stream, offset)
            record = _record_of(raw)
        except (OSError, ValueError):
            raise KeyError(export_id) from None
        if record["export_id"] != export_id:
            raise KeyError(export_id)
        return record

    def __iter__(self) -> Iterator[ExportId]:
        return iter(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    @staticmethod
    def _read(stream: BinaryIO, offset: int) -> bytes:
        stream.seek(offset)
        return stream.readline(MAX_RESUME_LINE + 1)

    def open(self) -> None:
        """Keep the file open for many reads, until :meth:`close` (else each read opens it)."""
        if self._stream is None:
            with contextlib.suppress(OSError):
                self._stream = open(self._path, "rb")  # noqa: SIM115 (closed in close())

    def close(self) -> None:
        """Close the file :meth:`open` opened."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


@dataclass
class EarlierRun:
    """What an earlier run's JSON lines say: every id they name (in order) and the
    records of those that need no more waiting (read from the file when asked for)."""

    ids: list[ExportId] = field(default_factory=list)
    final: Mapping[ExportId, dict[str, Any]] = field(default_factory=dict)


def read_earlier_run(
    path: str, *, downloading: bool, download_folder: Path | None = None
) -> EarlierRun:
    """Read ``--resume PATH``: each line one export's record, as ``wait`` prints them.

    A ``done`` or ``failed`` record is final, unless ``downloading`` and a ``done``
    record's file is not in place: with a ``download_folder``, the file it names must be
    a regular file inside that folder (not a link) with the size and sha256 the
    record gives (:func:`file_in_place`); without one, the record must at least name a
    file. Such an export is waited for, so fetched, again. A later final record of an id
    replaces an earlier one. An unfinished last line (a run killed mid-write) is skipped;
    any other line that is not such a record, or is longer than ``MAX_RESUME_LINE``, is a
    ``UsageError`` naming it. The file is read a line at a time.
    """
    order: dict[ExportId, int] = {}  # every id, in order; where its final record starts
    try:
        with open(path, "rb") as lines:
            number = offset = 0
            while True:
                raw = lines.readline(MAX_RESUME_LINE + 1)
                if not raw:
                    break
                number += 1
                start, offset = offset, offset + len(raw)
                if len(raw) > MAX_RESUME_LINE:
                    raise UsageError(
                        f"--resume {path}:{number}: line longer than {MAX_RESUME_LINE} bytes; "
                        "is this a file of qianfan-export-wait lines?"
                    )
                if not raw.strip():
                    continue
                try:
                    record = _record_of(raw)
                except ValueError as exc:
                    if not raw.endswith(b"\n") and lines.read(1) == b"":
                        break  # the last line, cut off mid-write
                    raise UsageError(f"--resume {path}:{number}: {exc}") from None
                export_id = record["export_id"]
                if _is_final(record, downloading, download_folder):
                    order[export_id] = start
                else:
                    order.setdefault(export_id, -1)
    except FileNotFoundError:
        raise UsageError(f"--resume {path!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"--resume {path!r} is a directory") from None
    except OSError as exc:
        raise UsageError(f"--resume {path!r} cannot be read: {exc.strerror or exc}") from None
    final = {export_id: offset for export_id, offset in order.items() if offset >= 0}
    return EarlierRun(list(order), FinalRecords(path, final))


def file_in_place(file: object, folder: Path) -> bool:
    """Whether an earlier run's ``file`` record (``{"path", "bytes", "sha256"}``) names a
    file still in place: a regular file (never a link) in ``folder`` or a folder under it
    (links among those folders are followed only while they stay inside), with that size
    and that sha256. Anything else, or any doubt, is ``False``."""
    if not isinstance(file, Mapping):
        return False
    path, size, digest = file.get("path"), file.get("bytes"), file.get("sha256")
    if not isinstance(path, str) or not path or "\x00" in path:
        return False
    if type(size) is not int or size < 0:
        return False
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        return False
    named = Path(path)
    if named.name in ("", ".", ".."):
        return False
    try:
        home, parent = os.path.realpath(folder), os.path.realpath(named.parent)
        if parent != home and not parent.startswith(os.path.join(home, "")):
            return False
        descriptor = os.open(named, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):  # missing, a link (ELOOP), unreadable
        return False
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size != size:
            return False
        hashed = hashlib.sha256()
        while piece := os.read(descriptor, 1 << 20):
            hashed.update(piece)
    except OSError:
        return False
    finally:
        os.close(descriptor)
    return hashed.hexdigest() == digest.lower()


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _record_of(raw: bytes) -> dict[str, Any]:
    try:
        record = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not a JSON line ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not isinstance(record.get("outcome"), str):
        raise ValueError("no 'outcome'; is this a file of qianfan-export-wait lines?")
    try:
        validate_export_id(record.get("export_id"))
    except ValueError as exc:
        raise ValueError(f"bad 'export_id': {exc}") from None
    return record


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_final(record: dict[str, Any], downloading: bool, folder: Path | None) -> bool:
    outcome = record["outcome"]
    if outcome not in FINAL_OUTCOMES:
        return False
    if not downloading or outcome != "done":
        return True
    if folder is None:
        return isinstance(record.get("file"), dict)
    return file_in_place(record.get("file"), folder)
