"""In which order the lines go out: the caller's (``--order input``) or as each export
finishes (``--order completion``). Pure: a printer takes lines and hands back the ones
that may be written now."""

from __future__ import annotations

import bisect
import itertools
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, cast

from ..models import ExportId

__all__ = ["ORDERS", "CompletionPrinter", "OrderedPrinter", "Printer", "printer_for"]

ORDERS = ("input", "completion")
"""The values of ``--order``."""


Render = Callable[[ExportId], str]
"""Makes an export's line when its turn comes (for lines known early but costly to hold,
such as an earlier run's records)."""


def _no_render(export_id: ExportId) -> str:
    raise LookupError(f"no line for export {export_id!r} to render")


class Printer(Protocol):
    """Decides when each export's line is written."""

    def add(self, export_id: ExportId, line: str) -> list[str]:
        """Take one export's line; return the lines to write now, in order."""

    def add_later(self, export_id: ExportId) -> list[str]:
        """As ``add``, for a line the printer's ``render`` makes when it is written."""

    def remaining(self, pending: Iterable[tuple[ExportId, str]]) -> Iterator[str]:
        """Every line not written yet, with ``pending``'s lines (for the exports that
        never got one, in the caller's order) in their places."""


class CompletionPrinter:
    """Each line as soon as it comes."""

    def __init__(self, render: Render = _no_render) -> None:
        self._render = render

    def add(self, export_id: ExportId, line: str) -> list[str]:
        """``[line]``: nothing waits."""
        return [line]

    def add_later(self, export_id: ExportId) -> list[str]:
        """The line, made now."""
        return [self._render(export_id)]

    def remaining(self, pending: Iterable[tuple[ExportId, str]]) -> Iterator[str]:
        """The pending exports' lines."""
        return (line for _, line in pending)


class OrderedPrinter:
    """Lines in the caller's order, each as soon as every earlier one is known."""

    def __init__(self, ids: Sequence[ExportId], render: Render = _no_render) -> None:
        # An id's place, found by bisection in sorted arrays: 8-16 bytes an id where a
        # dict costs about 90 (a million ids: 16 MB against 90). int and str ids are kept
        # apart (they never compare equal, and bools are refused). The usual --ids-file
        # of ascending numbers needs no sorting and no second array: an id's place is its
        # index.
        self._ints: array[int] = array("q")
        self._int_slots: array[int] | None = None
        self._strs: list[str] = []
        self._str_slots: array[int] = array("q")
        numbers = _int_array(ids)
        if numbers is not None:
            # C-speed checks: a million ids take a few tens of milliseconds.
            if all(map(operator.lt, numbers, itertools.islice(numbers, 1, None))):
                self._ints = numbers
            else:
                self._index_ints(numbers, range(len(numbers)))
        else:
            int_places = [n for n, export_id in enumerate(ids) if type(export_id) is int]
            str_places = [n for n, export_id in enumerate(ids) if type(export_id) is not int]
            self._index_ints(cast("Sequence[int]", ids), int_places)
            order = sorted(str_places, key=ids.__getitem__)
            self._strs = [cast(str, ids[n]) for n in order]
            self._str_slots = array("q", order)
        self._lines: list[str | None] = [None] * len(ids)
        self._next = 0
        # A line held for ``render`` is the empty string (never a real line): a pointer
        # an id, not the line's text, so an earlier run's million records are not held.
        self._ids = ids
        self._render = render

    def _index_ints(self, ids: Sequence[int], places: Sequence[int]) -> None:
        order = sorted(places, key=ids.__getitem__)
        self._ints = array("q", map(ids.__getitem__, order))
        self._int_slots = array("q", order)

    def _slot(self, export_id: ExportId) -> int:
        if type(export_id) is int:
            index = bisect.bisect_left(self._ints, export_id)
            return index if self._int_slots is None else self._int_slots[index]
        return self._str_slots[bisect.bisect_left(self._strs, cast(str, export_id))]

    def add(self, export_id: ExportId, line: str) -> list[str]:
        """Keep the line; return every line now ready in order."""
        lines = self._lines
        lines[self._slot(export_id)] = line
        ready: list[str] = []
        while self._next < len(lines):
            line_now = lines[self._next]
            if line_now is None:
                break
            ready.append(line_now or self._render(self._ids[self._next]))
            lines[self._next] = None
            self._next += 1
        return ready

    def add_later(self, export_id: ExportId) -> list[str]:
        """Keep a place for a line ``render`` makes when its turn comes."""
        return self.add(export_id, "")

    def remaining(self, pending: Iterable[tuple[ExportId, str]]) -> Iterator[str]:
        """The lines still held, merged in order with ``pending``'s, which must cover
        every id without a line, in the caller's order (as ``unfinished()`` gives them)."""
        lines = self._lines
        pending_lines = iter(pending)
        while self._next < len(lines):
            index = self._next
            held = lines[index]
            self._next += 1
            if held is not None:
                lines[index] = None
                yield held or self._render(self._ids[index])
                continue
            export_id, line = next(pending_lines, (None, ""))
            if export_id is None or self._slot(export_id) != index:
                raise AssertionError(f"pending export {export_id!r} is out of order")
            yield line


def _int_array(ids: Sequence[ExportId]) -> array[int] | None:
    """``ids`` as an array when every one is an int (bools are refused upstream)."""
    try:
        return array("q", cast("Sequence[int]", ids))
    except TypeError:  # a str among them
        return None


def printer_for(order: str, ids: Sequence[ExportId], render: Render = _no_render) -> Printer:
    """The printer for ``--order`` (``"input"`` or ``"completion"``); ``render`` makes
    the lines given by ``add_later``."""
    if order == "completion":
        return CompletionPrinter(render)
    if order == "input":
        return OrderedPrinter(ids, render)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
