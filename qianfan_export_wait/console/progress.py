"""The progress display on stderr: a one-line live bar on a terminal, and a one-line
summary at the end.

The bar is one line, cut to the terminal's width on every redraw, so it never wraps and
never leaves stale lines behind. When stdout is a terminal too, each JSON line is written
above the bar (clear the bar, write the line, draw the bar again), under one lock shared
with the writer's thread. ``render_bar`` and ``summary_line`` are pure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .._text import counted

__all__ = ["ProgressDisplay", "ProgressSnapshot", "render_bar", "summary_line"]

_CLEAR_LINE = "\r\x1b[2K"
_MIN_BAR = 10
_MAX_BAR = 40


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """What the display shows: outcome counts, time, requests, and bytes when
    downloading (``bytes_received`` is ``None`` otherwise)."""

    total: int
    finished: int
    failed: int
    errors: int
    timed_out: int
    elapsed: float
    request_rate: float
    requests: int
    throttled: int
    done: int = 0
    pending: int = 0
    resumed: int = 0
    bytes_received: int | None = None
    files: int = 0
    downloads_failed: int = 0


def format_seconds(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    whole = int(max(seconds, 0.0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(count: int) -> str:
    """``512 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.2 GiB``..."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def render_bar(snapshot: ProgressSnapshot, width: int, *, unicode: bool = True) -> str:
    """The live line for a terminal ``width`` columns wide, at most ``width - 3`` long (so
    neither the cursor nor the terminal's ``^C`` echo wraps it onto a line the next
    redraw would not clear): count, failures, errors, the real request rate, throttles,
    bytes when downloading, elapsed time, and a bar in the space left. Less important
    fields go first when the terminal is narrow."""
    fields = [
        (0, f"{snapshot.finished}/{snapshot.total}"),
        (1, f"failed {snapshot.failed}"),
        (1, f"errors {snapshot.errors}"),
        (3, f"timed out {snapshot.timed_out}" if snapshot.timed_out else ""),
        (2, f"{snapshot.request_rate:.0f} req/s"),
        (2, f"throttled {snapshot.throttled}"),
        (
            2,
            "" if snapshot.bytes_received is None else format_bytes(snapshot.bytes_received),
        ),
        (0, format_seconds(snapshot.elapsed)),
    ]
    room = max(width - 3, 1)
    wanted = [(rank, text) for rank, text in fields if text]
    shown = wanted
    for least in (3, 2, 1):
        if _joined_length(shown) <= room:
            break
        shown = [(rank, text) for rank, text in shown if rank < least]
    line = "  ".join(text for _, text in shown)
    space = room - len(line) - 2
    if shown == wanted and space >= _MIN_BAR:  # the graphic only when every number fits
        line = f"{_bar(snapshot, min(space, _MAX_BAR), unicode)}  {line}"
    return line[:room]


def _joined_length(fields: list[tuple[int, str]]) -> int:
    return sum(len(text) for _, text in fields) + 2 * max(len(fields) - 1, 0)


def _bar(snapshot: ProgressSnapshot, width: int, unicode: bool) -> str:
    inner = width - 2
    share = snapshot.finished / snapshot.total if snapshot.total else 1.0
    filled = min(inner, int(share * inner))
    full, empty = ("\u2588", "\u2591") if unicode else ("#", "-")
    return f"[{full * filled}{empty * (inner - filled)}]"


def terminal_width(stream: TextIO | None) -> int:
    """The width of the terminal ``stream`` draws on (``COLUMNS`` if set; 80 if unknown):
    the bar is on stderr, and stdout may be a file or another terminal."""
    fallback = shutil.get_terminal_size((80, 24)).columns  # honours COLUMNS
    if os.environ.get("COLUMNS", "").strip().isdigit() or stream is None:
        return fallback
    try:
        return os.get_terminal_size(stream.fileno()).columns or fallback
    except (AttributeError, OSError, ValueError):
        return fallback


def summary_line(snapshot: ProgressSnapshot, *, interrupted: str | None = None) -> str:
    """One line for the end of a run: outcomes, time, requests, files."""
    parts = [
        f"{snapshot.done} done",
        f"{snapshot.failed} failed",
        counted(snapshot.errors, "error"),
        f"{snapshot.timed_out} timed out",
    ]
    if snapshot.pending:
        parts.append(f"{snapshot.pending} pending")
    text = (
        f"{counted(snapshot.total, 'export')} in {snapshot.elapsed:.1f} s: {', '.join(parts)}; "
        f"{counted(snapshot.requests, 'request')}, {snapshot.throttled} throttled"
    )
    if snapshot.resumed:
        text += f"; {snapshot.resumed} from the earlier run"
    if snapshot.bytes_received is not None:
        files = counted(snapshot.files, "file")
        text += f"; {files}, {format_bytes(snapshot.bytes_received)} received"
        if snapshot.downloads_failed:
            text += f", {counted(snapshot.downloads_failed, 'download')} failed"
    if interrupted:
        text += f" ({interrupted})"
    return text


class ProgressDisplay:
    """The live bar on ``stream`` (stderr), drawn only when it is a terminal and
    ``enabled``; ``message`` prints a line above it; ``around_line`` wraps a write to a
    stdout on the same terminal."""

    def __init__(
        self,
        stream: TextIO | None,
        *,
        enabled: bool,
        stdout_is_terminal: bool = False,
        width: Callable[[], int] | None = None,
    ) -> None:
        self._stream = stream
        self._terminal = stream is not None and _isatty(stream)
        self.active = bool(enabled and self._terminal)
        self.shares_terminal = self.active and stdout_is_terminal
        self._width = width or (lambda: terminal_width(stream))
        self._unicode = _can_encode(stream, "\u2588\u2591")
        self._lock = threading.Lock()
        self._shown = ""

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Redraw the bar (skipped if the terminal is busy with a line right now)."""
        if not self.active:
            return
        text = render_bar(snapshot, self._width(), unicode=self._unicode)
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._shown = text
            self._put(_CLEAR_LINE + text)
        finally:
            self._lock.release()

    def around_line(self, write: Callable[[], None]) -> None:
        """Clear the bar, ``write`` (a line to the same terminal), draw the bar again."""
        with self._lock:
            self._put(_CLEAR_LINE)
            try:
                write()
            finally:
                self._put(_CLEAR_LINE + self._shown)

    def message(self, text: str) -> None:
        """Print ``text`` on its own line (above the bar when it is shown)."""
        if self._stream is None:
            return
        if self._terminal:
            # A person reads it: wrapped at the terminal's width, between words, the
            # following lines indented, rather than cut wherever the terminal wraps it.
            text = textwrap.fill(
                text,
                max(self._width() - 1, 20),
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        with self._lock:
            if self.active:
                self._put(f"{_CLEAR_LINE}{text}\n{self._shown}")
            else:
                self._put(text + "\n")

    def close(self) -> None:
        """Take the bar off the screen for good."""
        if not self.active:
            return
        with self._lock:
            self._put(_CLEAR_LINE)
            self.active = False
            self._shown = ""

    def _put(self, text: str) -> None:
        stream = self._stream
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a closed stderr: nothing to show
            stream.write(text)
            stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def _can_encode(stream: TextIO | None, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
