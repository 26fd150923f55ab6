"""``Console``: the two streams of a run, JSON lines on stdout through a ``LineWriter``
and people's text on stderr through a ``ProgressDisplay``, with the log handler that
prints above the bar."""

from __future__ import annotations

import logging
from typing import TextIO

from .output import LineWriter
from .progress import ProgressDisplay

__all__ = ["Console", "DisplayLogHandler"]


class Console:
    """stdout (``None``: the lines are not wanted) and stderr for one run.

    ``bar``: draw the live bar (when stderr is a terminal); ``summary``: print the
    one-line summary at the end.
    """

    def __init__(
        self,
        stdout: TextIO | None,
        stderr: TextIO | None,
        *,
        bar: bool = True,
        summary: bool = True,
    ) -> None:
        self.display = ProgressDisplay(stderr, enabled=bar, stdout_is_terminal=_isatty(stdout))
        around = self.display.around_line if self.display.shares_terminal else None
        self.lines = LineWriter(stdout, around=around)
        self.summary = summary

    def say(self, text: str) -> None:
        """A line for people on stderr, above the bar."""
        self.display.message(text)


class DisplayLogHandler(logging.Handler):
    """Log records on stderr through a ``ProgressDisplay``, so they never cut into the
    bar (it is swapped in for the duration of a run)."""

    def __init__(self, display: ProgressDisplay) -> None:
        super().__init__()
        self._display = display

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._display.message(self.format(record))
        except Exception:  # a log line must never end the run
            self.handleError(record)


def _isatty(stream: TextIO | None) -> bool:
    if stream is None:
        return False
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False
