"""A tiny terminal for tests: what a screen shows after some output (CR, LF, and the
erase-line sequence the progress display uses)."""

from __future__ import annotations

import io
import re

_ESCAPE = re.compile(r"\x1b\[(\d*)K")


class FakeTerminal(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: ``\\r`` goes back to column 0,
    ``ESC[2K`` erases the line, ``\\n`` starts a new one, anything else overwrites."""
    lines: list[list[str]] = [[]]
    column = 0
    position = 0
    while position < len(text):
        match = _ESCAPE.match(text, position)
        if match:
            if match.group(1) == "2":
                lines[-1] = []
            else:
                del lines[-1][column:]
            position = match.end()
            continue
        char = text[position]
        position += 1
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        else:
            row = lines[-1]
            row.extend(" " * (column - len(row)))
            if column < len(row):
                row[column] = char
            else:
                row.append(char)
            column += 1
    return ["".join(row).rstrip() for row in lines]
