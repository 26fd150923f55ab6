"""What the user hands the command line besides options: ids (arguments, ``--ids-file``)
and an earlier run's JSON lines (``--resume``). Everything here is read before any
request, and every problem is a ``UsageError`` naming the flag, the file and the line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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

__all__ = ["FINAL_OUTCOMES", "EarlierRun", "gather_ids", "read_earlier_run", "read_ids_file"]

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


@dataclass
class EarlierRun:
    """What an earlier run's JSON lines say: every id they name (in order) and the
    records of those that need no more waiting."""

    ids: list[ExportId] = field(default_factory=list)
    final: dict[ExportId, dict[str, Any]] = field(default_factory=dict)


def read_earlier_run(path: str, *, downloading: bool) -> EarlierRun:
    """Read ``--resume PATH``: each line one export's record, as ``wait`` prints them.

    A ``done`` or ``failed`` record is final, unless ``downloading`` and a ``done``
    record has no ``file`` (its file did not come: it is waited for, so fetched, again).
    A later final record of an id replaces an earlier one. An unfinished last line (a
    run killed mid-write) is skipped; any other line that is not such a record is a
    ``UsageError`` naming it.
    """
    earlier = EarlierRun()
    seen: set[ExportId] = set()
    try:
        with open(path, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    record = _record_of(raw)
                except ValueError as exc:
                    if not raw.endswith(b"\n") and lines.read(1) == b"":
                        break  # the last line, cut off mid-write
                    raise UsageError(f"--resume {path}:{number}: {exc}") from None
                export_id = record["export_id"]
                if export_id not in seen:
                    seen.add(export_id)
                    earlier.ids.append(export_id)
                if _is_final(record, downloading):
                    earlier.final[export_id] = record
    except FileNotFoundError:
        raise UsageError(f"--resume {path!r} does not exist") from None
    except OSError as exc:
        raise UsageError(f"--resume {path!r} cannot be read: {exc.strerror or exc}") from None
    return earlier


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


def _is_final(record: dict[str, Any], downloading: bool) -> bool:
    outcome = record["outcome"]
    if outcome not in FINAL_OUTCOMES:
        return False
    return not (downloading and outcome == "done" and not isinstance(record.get("file"), dict))
