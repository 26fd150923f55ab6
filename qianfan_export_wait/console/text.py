"""``--format text``: one aligned line per export for people, instead of JSON.

::

    EXPORT ID           OUTCOME STATE      POLLS ELAPSED FILE / ERROR
    96                  done    Done           4   12.3s /data/export-96.zip
    amemt-hkkf5y9e64j8  error   -              1    0.2s 500001: unknown id

Each line fits 80 columns (wide characters count two); what is too long is cut, marked
``...``. Control characters from the server are shown as ``?``, so an answer can never
move the cursor or recolour a terminal. JSON Lines stay the default, and the contract for
scripts: the lines are made from the very records JSON mode prints. Pure code, but for
``TextLineWriter``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any, TextIO

from .output import AroundWrite, LineWriter

__all__ = ["FORMATS", "TEXT_HEADER", "TEXT_WIDTH", "TextLineWriter", "text_line"]

FORMATS = ("json", "text")
"""The choices of ``--format``."""

TEXT_WIDTH = 80

# (title, width, right-aligned); the last column takes what is left of TEXT_WIDTH.
_COLUMNS = (
    ("EXPORT ID", 19, False),
    ("OUTCOME", 7, False),
    ("STATE", 10, False),
    ("POLLS", 5, True),
    ("ELAPSED", 7, True),
)
_LAST = TEXT_WIDTH - sum(width + 1 for _, width, _ in _COLUMNS)


_CUT = "..."


def _width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _clean(text: str) -> str:
    """``text`` on one line, every control character shown as ``?``."""
    return "".join(
        "?" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char for char in text
    )


def _fit(text: str, width: int, *, right: bool = False, keep_end: bool = False) -> str:
    """``text`` padded or cut (marked ``...``) to exactly ``width`` columns."""
    text = _clean(text)
    used = sum(_width(char) for char in text)
    if used > width:
        chars = list(reversed(text)) if keep_end else list(text)
        kept: list[str] = []
        room = width - len(_CUT)
        for char in chars:
            if _width(char) > room:
                break
            kept.append(char)
            room -= _width(char)
        body = "".join(reversed(kept)) if keep_end else "".join(kept)
        text = _CUT + body if keep_end else body + _CUT
        used = width - room
    pad = " " * (width - used)
    return pad + text if right else text + pad


def format_elapsed(seconds: object) -> str:
    """``12.3s``, ``4m05s``, ``2h03m``: short enough for the ELAPSED column."""
    if not isinstance(seconds, (int, float)) or seconds != seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 1000 else f"{hours}h"


def _last_column(record: Mapping[str, Any]) -> tuple[str, bool]:
    """What goes in FILE / ERROR, and whether it is a path (cut from the left)."""
    file = record.get("file")
    if isinstance(file, Mapping) and file.get("path"):
        return str(file["path"]), True
    download_error = record.get("download_error")
    if isinstance(download_error, Mapping):
        return "download: " + str(download_error.get("message") or "?"), False
    error = record.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        message = str(error.get("message") or "")
        return (f"{code}: {message}" if code is not None else message), False
    return "", False


def text_line(record: Mapping[str, Any]) -> str:
    """The line for one export's record (as ``records.outcome_record`` makes it)."""
    values = (
        str(record.get("export_id", "?")),
        str(record.get("outcome") or "-"),
        str(record.get("state") or "-"),
        str(record.get("polls", "-")),
        format_elapsed(record.get("elapsed_s")),
    )
    cells = [
        _fit(value, width, right=right)
        for value, (_, width, right) in zip(values, _COLUMNS, strict=True)
    ]
    last, is_path = _last_column(record)
    cells.append(_fit(last, _LAST, keep_end=is_path).rstrip())
    return " ".join(cells).rstrip()


TEXT_HEADER = " ".join(
    [_fit(title, width, right=right) for title, width, right in _COLUMNS] + ["FILE / ERROR"]
)


class TextLineWriter(LineWriter):
    """A ``LineWriter`` that prints each JSON line it is given as a ``text_line``, under
    one header line."""

    def __init__(self, stream: TextIO | None, *, around: AroundWrite | None = None) -> None:
        super().__init__(stream, around=around)
        self._header = False

    def write(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:  # not a record: as it is
            text = _clean(line)
        else:
            text = text_line(record) if isinstance(record, dict) else _clean(line)
        if not self._header:
            # One queued line with the first record's: ``written`` counts records' lines.
            self._header = True
            text = f"{TEXT_HEADER}\n{text}"
        super().write(text)


def use_text(console: Any, stdout: TextIO | None) -> None:
    """Make ``console`` print text lines on ``stdout`` instead of JSON lines."""
    display = console.display
    around = display.around_line if display.shares_terminal else None
    console.lines = TextLineWriter(stdout, around=around)


def add_format_option(parser: Any) -> None:
    """``--format json|text`` on a verb's parser."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="stdout: one JSON object per line, for scripts, or an aligned line per export "
        "for people, 80 columns (default: %(default)s)",
    )
