"""Who waits for what: a ``Caller`` (one wait, one deadline), an ``Entry`` (one export id
and every caller of it), and the records of outcomes made later (``Pending``)."""

from __future__ import annotations

from collections.abc import Iterable
from math import inf
from typing import TYPE_CHECKING, NamedTuple

from ..errors import DownloadError, QianfanError
from ..models import ExportId, ExportState, ExportStatus
from .health import Trouble
from .outcomes import ExportOutcome, OutcomeKind

if TYPE_CHECKING:
    from ..models import DownloadRecord

__all__ = ["Caller", "Entry", "Pending", "PendingRun", "entry_callers", "status_age"]


class Caller:
    """One caller's interest in some exports: when it began, its deadline, and where its
    outcomes go. The driver's handles, batches and streams subclass it."""

    __slots__ = ("closed", "deadline", "started", "waiting")

    def __init__(self, started: float, deadline: float) -> None:
        self.started = started
        self.deadline = deadline
        # Exports joined and not yet given an outcome; closed once none is left, or on
        # leaving.
        self.waiting = 0
        self.closed = False

    lazy = False
    """Whether outcomes may come as ``Pending`` records to ``defer``, made into outcomes
    (``Scheduler.materialize``) only when read."""

    def deliver(self, outcome: ExportOutcome) -> None:
        """Take one export's outcome (called once per export this caller waits on)."""
        raise NotImplementedError

    def defer(self, pending: Pending | PendingRun) -> None:
        """Take one export's outcome (a ``Pending``), or many (a ``PendingRun``), to be
        made when read (only if ``lazy``)."""
        raise NotImplementedError

    def abort(self, error: BaseException) -> None:
        """The waiter stops for good: end this caller's wait with ``error``."""
        raise NotImplementedError

    def entries(self) -> Iterable[Entry]:
        """The entries this caller joined (some may be finished for it already)."""
        raise NotImplementedError


class Pending(NamedTuple):
    """An outcome not yet made: what a lazy caller keeps until it reads it (``at``: when
    it came; ``files``: the download's record or error, if any)."""

    entry: Entry
    kind: OutcomeKind
    error: QianfanError | None
    at: float
    files: tuple[DownloadRecord | None, DownloadError | None] | None


class PendingRun(NamedTuple):
    """Many outcomes of one kind that came at once (a deadline): what a lazy caller keeps
    instead of one record each, until it reads them (``entries`` last first)."""

    kind: OutcomeKind
    at: float
    entries: list[Entry]


def status_age(entry: Entry, at: float) -> float | None:
    """How old ``entry``'s last status is at ``at`` (``None`` if it has none)."""
    answered = entry.answered
    return None if answered is None else max(0.0, at - answered)


def entry_callers(callers: Caller | list[Caller]) -> list[Caller]:
    """``Entry.callers`` as a list."""
    return list(callers) if isinstance(callers, list) else [callers]


class Entry:
    """One export id being waited on, and what is known of it."""

    __slots__ = (
        "answered",
        "attempt",
        "callers",
        "deadline",
        "due",
        "export_id",
        "in_flight",
        "look",
        "polls",
        "seen",
        "sent",
        "started",
        "state",
        "trouble",
    )

    def __init__(self, export_id: ExportId, caller: Caller) -> None:
        self.export_id = export_id
        self.callers: Caller | list[Caller] | None = caller
        self.deadline = caller.deadline
        self.started = caller.started
        # The key of the DueQueue bucket it waits in (shared by the bucket), or None.
        self.due: float | None = None
        self.in_flight = False
        self.polls = 0
        self.attempt = 0
        self.trouble: Trouble | None = None
        self.state: ExportState | str | None = None
        # The last status seen: the object itself, or packed (see statuses.COMPACT_ABOVE).
        self.seen: ExportStatus | bytes | None = None
        # When the last status was received (the clock's time), or None.
        self.answered: float | None = None
        # The deadline its last look is owed for (a key of LastLooks), or None: none owed
        # (no deadline, or the look was sent).
        self.look: float | None = None
        # When its last poll that reached the server was sent (-inf: none yet): a poll
        # pays the look of every deadline it was sent within ``look_window`` of.
        self.sent = -inf

    def __repr__(self) -> str:
        return f"<Entry {self.export_id!r} state={self.state} polls={self.polls}>"

    def caller_list(self) -> list[Caller]:
        """The callers still waiting on this export."""
        callers = self.callers
        if callers is None:
            return []
        if isinstance(callers, list):
            return list(callers)
        return [callers]

    def has_caller(self, caller: Caller) -> bool:
        """Whether ``caller`` still waits on this export."""
        callers = self.callers
        if isinstance(callers, list):
            return caller in callers
        return callers is caller

    def add_caller(self, caller: Caller) -> None:
        """Share this export with one more caller."""
        callers = self.callers
        if callers is None:
            self.callers = caller
        elif isinstance(callers, list):
            callers.append(caller)
        else:
            self.callers = [callers, caller]
        if caller.deadline < self.deadline:
            self.deadline = caller.deadline

    def remove_caller(self, caller: Caller) -> bool:
        """Forget ``caller``; return whether any caller is left."""
        callers = self.callers
        if isinstance(callers, list):
            if caller in callers:
                callers.remove(caller)
            if len(callers) == 1:
                self.callers = callers[0]
            elif not callers:
                self.callers = None
        elif callers is caller:
            self.callers = None
        remaining = self.callers
        if remaining is None:
            return False
        if isinstance(remaining, list):
            self.deadline = min(other.deadline for other in remaining)
        else:
            self.deadline = remaining.deadline
        return True
