"""Caller lifecycle and deadlines: who is still waiting, and whose deadline comes next.

A caller is counted from ``watch`` until it is closed (its last outcome handed over, or
it left). Deadlines wait in a heap; a closed caller's deadline stays there until it comes
up (or a sweep), since removing it from the middle of a heap costs more than skipping it.
"""

from __future__ import annotations

import heapq
import itertools
from math import inf

from .entries import Caller
from .outcomes import ExportOutcome

__all__ = ["CallerBook"]

_SWEEP_ABOVE = 1000
"""Closed callers kept in the deadline heap before it is swept (if they are most of it)."""


class CallerBook:
    """The callers of a scheduler still waiting, and their deadlines."""

    __slots__ = ("_closed_deadlines", "_deadlines", "_order", "count")

    def __init__(self) -> None:
        self._deadlines: list[tuple[float, int, Caller]] = []
        self._closed_deadlines = 0
        self._order = itertools.count()
        self.count = 0

    def watch(self, caller: Caller) -> None:
        """Start counting ``caller`` and keep its deadline (after its ``join`` calls)."""
        if caller.closed:
            return
        self.count += 1
        if caller.deadline < inf:
            heapq.heappush(self._deadlines, (caller.deadline, next(self._order), caller))

    def recheck(self, caller: Caller) -> None:
        """Look at ``caller``'s deadline again at the next ``pop_due`` (it has passed)."""
        heapq.heappush(self._deadlines, (caller.deadline, next(self._order), caller))

    def next_deadline(self) -> float:
        """The earliest deadline of a caller still waiting (``inf`` if none)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].closed:
            heapq.heappop(deadlines)
            self._closed_deadlines -= 1
        return deadlines[0][0] if deadlines else inf

    def pop_due(self, now: float) -> Caller | None:
        """A caller still waiting whose deadline has passed by ``now``, or ``None``."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            caller = heapq.heappop(deadlines)[2]
            if not caller.closed:
                return caller
            self._closed_deadlines -= 1
        return None

    def close_if_done(self, caller: Caller) -> None:
        """``caller`` has one export fewer to wait on: close it if none is left."""
        caller.waiting -= 1
        if caller.waiting <= 0 and not caller.closed:
            self.close(caller)

    def hand(self, caller: Caller, outcome: ExportOutcome) -> None:
        """Give ``caller`` one export's outcome."""
        self.close_if_done(caller)
        caller.deliver(outcome)

    def close(self, caller: Caller) -> None:
        """``caller`` waits no more."""
        caller.closed = True
        self.count -= 1
        if not self.count:
            # Nobody waits: every deadline kept is a finished caller's. Back to idle size.
            self.clear()
            return
        if caller.deadline < inf:
            # Finished callers stay in the deadline heap until their deadline comes up;
            # in a long-lived waiter that could be hours of them, so sweep now and then.
            self._closed_deadlines += 1
            deadlines = self._deadlines
            closed = self._closed_deadlines
            if closed > _SWEEP_ABOVE and closed * 2 > len(deadlines):
                deadlines[:] = [item for item in deadlines if not item[2].closed]
                heapq.heapify(deadlines)
                self._closed_deadlines = 0

    def clear(self) -> None:
        """Forget every deadline kept."""
        self._deadlines.clear()
        self._closed_deadlines = 0
