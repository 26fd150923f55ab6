"""The waiter's scheduling core: pure bookkeeping, no asyncio and no clock of its own.

The driver passes the time in, ``take``s what to poll next, sends it, and reports the
result with ``answer``; the core decides every outcome and hands it to the callers
waiting for it::

    callers (wait, wait_all, as_completed)  --join/leave-->  Entry per export id
    Entry  --due time-->  DueQueue  --take()-->  driver sends  --answer()-->  outcome
    Caller deadlines (CallerBook)  --expire()-->  timeout outcomes, polled or not
    a run of transient failures  -->  one Outage: a single probe, then everyone at once

Its rooms: the due queue (``duequeue``), entries and callers (``entries``, ``callers``),
service health (``health``), what an answer means (``answers``), status storage and
outcomes made lazily (``statuses``), the last looks before deadlines (``looks``).

One ``Entry`` serves every caller of its export id: they share its polls and get the
same outcome. An entry that no caller wants any more is dropped and polled no more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from math import inf
from typing import TYPE_CHECKING

from ..errors import AuthError, DownloadError, QianfanError
from ..models import ExportId
from . import answers
from .answers import NOTHING, Action, Downloaded, Reply
from .callers import CallerBook
from .duequeue import DueQueue
from .entries import Caller, Entry, Pending, PendingRun, entry_callers
from .health import OUTAGE_AFTER_FAILURES, Outage, Trouble, timeout_error
from .looks import LastLooks
from .outcomes import ExportOutcome, OutcomeKind, WaiterEvent
from .policy import PollPolicy, RetryAfterBound, Schedule
from .statuses import StatusStore

if TYPE_CHECKING:
    from ..models import DownloadRecord


__all__ = [
    "NOTHING",
    "OUTAGE_AFTER_FAILURES",
    "Action",
    "Caller",
    "Downloaded",
    "DueQueue",
    "Entry",
    "LastLooks",
    "Outage",
    "Pending",
    "PendingRun",
    "Reply",
    "Scheduler",
    "entry_callers",
]


class Scheduler:
    """Every export a waiter is waiting on, and the rules that end each caller's wait.

    The driver's verbs: ``join``/``leave`` (callers), ``expire`` (deadlines), ``take``
    (the next poll) and ``answer`` (its result, returning what the driver must do).
    ``notify`` receives state changes and final outcomes (``on_update``). Every method
    takes the current time from the caller and never blocks.
    """

    def __init__(
        self,
        policy: PollPolicy,
        *,
        resolution: float = 0.0,
        notify: Callable[[WaiterEvent], None] | None = None,
        downloads: bool = False,
    ) -> None:
        self.policy = policy
        self.entries: dict[ExportId, Entry] = {}
        self.queue = DueQueue(resolution)
        self.resolution = resolution
        self.looks = LastLooks(margin=2.0 * resolution)
        # A poll sent this close to a deadline is that deadline's last look.
        self.look_window = max(policy.min_delay, resolution)
        self.notify = notify
        self.poll_schedule = Schedule(policy.poll_strategy())
        self.retry_schedule = Schedule(policy.retry_strategy())
        self.book = CallerBook()
        # The earliest deadline of a caller still waiting (``inf`` if none); read once a
        # poll, so the book's own method, not one that calls it.
        self.next_deadline: Callable[[], float] = self.book.next_deadline
        # Whether a Done export waits for its file before its outcome (a downloader).
        self.downloads = downloads
        self.proven = False
        self.auth_error: AuthError | None = None
        self.auth_failed_at = -inf
        self.outage: Outage | None = None
        self.failures_in_row = 0
        self.statuses = StatusStore()
        self._retry_after = RetryAfterBound(policy)
        # Counts over the waiter's life.
        self.total = 0
        self.counts = dict.fromkeys(OutcomeKind, 0)
        self.requests = 0
        self.throttled = 0
        self.retries = 0

    @property
    def callers(self) -> int:
        """Callers still waiting."""
        return self.book.count

    # -- callers ---------------------------------------------------------------------

    def join(self, caller: Caller, export_id: ExportId, now: float) -> Entry:
        """Make ``caller`` wait on ``export_id``; a new export is due for a poll now."""
        caller.waiting += 1
        entry = self.entries.get(export_id)
        if entry is None:
            entry = Entry(export_id, caller)
            self.entries[export_id] = entry
            self.total += 1
            self.queue.push(entry, now)
            if entry.deadline < inf:
                self.looks.owe(entry)
            return entry
        entry.add_caller(caller)
        look = entry.look
        if caller.deadline < inf and (look is None or caller.deadline < look):
            self.replan(entry)  # its deadline may be one no poll has looked near yet
        due = self.queue.due_time(entry)
        if due is None:
            return entry  # in flight (or downloading): the answer on its way is fresh
        answered = entry.answered
        if (
            due > now
            and entry.trouble is None
            and (answered is None or now - answered > self.policy.min_delay)
        ):
            # A new caller does not inherit another's backoff: what it would learn is
            # older than the schedule ever lets an answer get, so it polls anew.
            self.queue.push(entry, now)
        elif due > caller.deadline:
            # The Smithy rule for this caller too: one last poll at its deadline.
            self.queue.push(entry, caller.deadline)
        return entry

    def join_many(self, caller: Caller, export_ids: Iterable[ExportId], now: float) -> list[Entry]:
        """``join`` for many ids at once (each once; a repeated id is skipped); return the
        entries joined, in order."""
        entries = self.entries
        get = entries.get
        joined: list[Entry] = []
        fresh: list[Entry] = []
        for export_id in export_ids:
            entry = get(export_id)
            if entry is None:
                entry = entries[export_id] = Entry(export_id, caller)
                fresh.append(entry)
            elif entry.has_caller(caller):
                continue
            else:
                caller.waiting -= 1  # join counts it again
                self.join(caller, export_id, now)
            joined.append(entry)
        caller.waiting += len(joined)
        self.total += len(fresh)
        self.queue.push_new(fresh, now)
        if fresh and caller.deadline < inf:
            self.looks.owe_many(fresh, caller.deadline)
        return joined

    def joined_all(self, caller: Caller, now: float) -> None:
        """``caller`` joined its ids a chunk at a time, holding itself open meanwhile
        (``waiting`` one more): it is done joining. A deadline that passed meanwhile is
        looked at again, for the ids that joined after it."""
        if caller.closed:
            return
        if caller.deadline <= now:
            self.book.recheck(caller)
        self.book.close_if_done(caller)

    def watch(self, caller: Caller) -> None:
        """Start counting ``caller`` and keep its deadline (after its ``join`` calls)."""
        self.book.watch(caller)

    def leave(self, caller: Caller) -> list[Entry]:
        """``caller`` stops waiting; return the entries in flight that nobody wants now."""
        if caller.closed:
            return []
        self.book.close(caller)
        abandoned = []
        for entry in caller.entries():
            if not entry.has_caller(caller):
                continue
            if not entry.remove_caller(caller):
                self._drop(entry, OutcomeKind.PENDING)
                if entry.in_flight:
                    abandoned.append(entry)
            elif entry.look == caller.deadline:
                self.replan(entry)
        return abandoned

    def expire(self, now: float) -> None:
        """End the wait of every caller whose deadline has passed, polled or not.

        An export with a poll in flight is decided when that answer comes (within the
        request timeout); the others end now as ``timeout``.
        """
        pop_due = self.book.pop_due
        caller = pop_due(now)
        while caller is not None:
            if caller.lazy:
                self._expire_lazily(caller, now)
            else:
                for entry in list(caller.entries()):
                    if not entry.in_flight and entry.has_caller(caller):
                        self._time_out(entry, caller, now)
            caller = pop_due(now)

    def _expire_lazily(self, caller: Caller, now: float) -> None:
        """``expire`` for a lazy caller: its timeouts go as one ``PendingRun``, so a
        deadline shared by a hundred thousand exports costs a list, not an outcome each."""
        run: list[Entry] = []
        outage = self.outage
        for entry in list(caller.entries()):
            if entry.in_flight or not entry.has_caller(caller):
                continue
            if entry.callers is not caller:  # shared with others: its outcome now
                self._time_out(entry, caller, now)
                continue
            if outage is not None and entry.trouble is None:
                # Read later, the timeout must still say the service was not answering.
                since = max(outage.started, entry.started)
                entry.trouble = Trouble(since, outage.last_error)
            run.append(entry)
            self._forget(entry, caller, OutcomeKind.TIMEOUT)
        if run:
            caller.waiting -= len(run) - 1
            self.book.close_if_done(caller)
            run.reverse()  # read from the end, so in the order they were asked for
            caller.defer(PendingRun(OutcomeKind.TIMEOUT, now, run))

    def _time_out(self, entry: Entry, caller: Caller, now: float) -> bool:
        """``caller``'s deadline passed: its ``timeout`` outcome for ``entry``; return
        whether anyone still waits on ``entry``."""
        self._deliver(entry, caller, OutcomeKind.TIMEOUT, now, self._timeout_error(entry, now))
        return self._forget(entry, caller, OutcomeKind.TIMEOUT)

    # -- what to poll ----------------------------------------------------------------

    def ready_at(self) -> float:
        """When the next poll may go (``inf``: nothing to send until an answer comes)."""
        outage = self.outage
        if outage is None:
            ready = self.queue.ready_at()
            if self.looks.total:
                start = self.looks.start()
                return start if start < ready else ready
            return ready
        if outage.probe is not None or not self.queue:
            return inf
        return outage.probe_due

    def next_event(self) -> float:
        """The earliest moment the driver must act: a poll or a deadline."""
        ready = self.ready_at()
        deadline = self.book.next_deadline()
        return ready if ready < deadline else deadline

    def set_rate(self, rate: float) -> None:
        """The rate the limiter allows now: last looks are planned at it."""
        self.looks.set_rate(rate)

    def take(self, now: float) -> Entry | None:
        """The next export to poll now, marked in flight; ``None`` if none may go now.

        During an outage only one probe goes, the export due soonest, when its backoff
        allows.
        """
        outage = self.outage
        if outage is None:
            entry = None
            looks = self.looks
            if looks.total and now >= looks.start():
                # Last looks are due: the earliest deadline's goes first, wherever the
                # export stands in the poll schedule.
                entry = looks.pop()
                while entry is not None and entry.in_flight:
                    # Its answer is on the way: that is its look (the next deadline's,
                    # if it has another caller, is planned when the answer comes).
                    entry = looks.pop()
                if entry is not None:
                    self.queue.discard(entry)
                    entry.sent = now
                    self.replan(entry)  # a later caller's deadline: its look is owed
            if entry is None:
                entry = self.queue.pop(now)
                if entry is not None:
                    entry.sent = now
                    look = entry.look
                    if look is not None and now >= look - self.look_window:
                        self.replan(entry)
        elif outage.probe is None and now >= outage.probe_due:
            entry = self.queue.pop_earliest()
            outage.probe = entry
        else:
            return None
        if entry is not None:
            entry.in_flight = True
            entry.polls += 1
            self.requests += 1
        return entry

    def count_request(self) -> None:
        """A status request went outside the schedule (a fresh download link)."""
        self.requests += 1

    # -- answers ---------------------------------------------------------------------

    # ``answer(entry, result, now)``: ``entry``'s poll ended with ``result`` (a status,
    # the exception its request raised, or its file ``Downloaded``); returns the
    # ``Reply`` saying what the driver must do. Bound here as is: it runs once a poll.
    answer = answers.answer

    def fail(self, entry: Entry, error: BaseException, now: float) -> None:
        """Handling ``entry``'s answer raised ``error`` (a wait strategy, the limiter): the
        export ends as ``error`` carrying it, and the others go on."""
        answers.on_unexpected(self, entry, error, now)

    def pause_for(self, retry_after: float | None, now: float) -> float | None:
        """How long a throttle's ``Retry-After`` holds polls back: never past when the
        callers' last looks must begin (``None``: the header gave none)."""
        deadline = self.book.next_deadline()
        looks = self.looks.start() if self.looks.total else inf
        return self._retry_after.pause(retry_after, now, looks if looks < deadline else deadline)

    def auth_refusal(self, now: float) -> AuthError | None:
        """The authentication failure a new caller gets at once: the last one, until its
        cool-down has passed or an answer has proven the credentials again."""
        error = self.auth_error
        if error is None or now - self.auth_failed_at >= self.policy.auth_cooldown:
            return None
        return error

    def end_all(self, error: QianfanError, now: float) -> None:
        """End every export as ``error`` carrying ``error``."""
        for entry in list(self.entries.values()):
            self.finish(entry, OutcomeKind.ERROR, now, error)

    def abort_all(self, error: BaseException) -> None:
        """End every caller's wait with ``error`` raised, and forget every export."""
        callers: dict[int, Caller] = {}
        for entry in self.entries.values():
            for caller in entry.caller_list():
                callers[id(caller)] = caller
            entry.callers = None
            self.queue.discard(entry)
        self.entries.clear()
        self.book.clear()
        self.looks = LastLooks(self.looks.margin)
        for caller in callers.values():
            if not caller.closed:
                self.book.close(caller)
                caller.abort(error)

    # -- what is known ---------------------------------------------------------------

    def snapshot(self, entry: Entry, caller: Caller, now: float) -> ExportOutcome:
        """A ``pending`` outcome: what is known of ``entry`` now, for ``caller``."""
        return self.statuses.snapshot(entry, caller, now)

    def materialize(self, pending: Pending, caller: Caller) -> ExportOutcome:
        """The outcome ``caller`` (lazy) was given as ``pending``."""
        return self.statuses.materialize(pending, caller)

    def timed_out(self, entry: Entry, caller: Caller, at: float) -> ExportOutcome:
        """The ``timeout`` outcome of a ``PendingRun``'s ``entry``, for ``caller``."""
        error = self._timeout_error(entry, at)
        outcome = self.statuses.outcome(entry, caller, OutcomeKind.TIMEOUT, at, error)
        entry.seen = None
        return outcome

    def unavailable_for(self, now: float) -> float | None:
        """Seconds the service has been unavailable, or ``None`` while it answers."""
        return None if self.outage is None else now - self.outage.started

    # -- for the answers room --------------------------------------------------------

    def schedule(self, entry: Entry, due: float) -> None:
        """Queue the next poll; while a last look is owed, never later than the nearest
        deadline of its callers (the Smithy rule; ``LastLooks`` sends it sooner when the
        rate limit needs the time)."""
        look = entry.look
        if look is not None and due > look:
            due = look
        self.queue.push(entry, due)

    def replan(self, entry: Entry) -> None:
        """Owe ``entry``'s look for the nearest deadline of its callers that its last
        poll was not sent within ``look_window`` of (none owed if there is none)."""
        looks = self.looks
        looks.paid(entry)
        callers = entry.callers
        if callers is None:
            return
        covered = entry.sent + self.look_window
        if isinstance(callers, list):
            owed = min((c.deadline for c in callers if c.deadline > covered), default=inf)
        else:
            owed = callers.deadline if callers.deadline > covered else inf
        if owed < inf:
            looks.owe_many([entry], owed)

    def expire_callers_of(self, entry: Entry, now: float) -> bool:
        """After an answer: end the wait of callers past their deadline; return whether
        anyone still waits."""
        if entry.deadline > now:
            return entry.callers is not None
        for caller in entry.caller_list():
            if caller.deadline <= now and not self._time_out(entry, caller, now):
                return False
        return entry.callers is not None

    def finish(
        self,
        entry: Entry,
        kind: OutcomeKind,
        now: float,
        error: QianfanError | None = None,
        *,
        file: DownloadRecord | None = None,
        download_error: DownloadError | None = None,
    ) -> None:
        """``entry`` has its final outcome: give it to every caller and drop the entry."""
        callers = entry.callers
        entry.callers = None
        self._drop(entry, kind)
        notify = self.notify
        if isinstance(callers, Caller) and callers.lazy and notify is None:
            # One caller that takes outcomes as it reads them: nothing is decoded now, so
            # a hundred thousand outcomes at once (a deadline, an outage) stay small.
            self.book.close_if_done(callers)
            files = None if file is None and download_error is None else (file, download_error)
            callers.defer(Pending(entry, kind, error, now, files))
            return
        if callers is None:
            entry.seen = None
            return
        made = self.statuses.final(
            entry, entry_callers(callers), kind, now, error, file, download_error
        )
        hand = self.book.hand
        for caller, outcome in made:
            hand(caller, outcome)
        if made and notify is not None:
            notify(made[0][1])

    # -- internals -------------------------------------------------------------------

    def _timeout_error(self, entry: Entry, now: float) -> QianfanError | None:
        return timeout_error(entry.trouble, entry.started, self.outage, now)

    def _deliver(
        self,
        entry: Entry,
        caller: Caller,
        kind: OutcomeKind,
        now: float,
        error: QianfanError | None = None,
    ) -> None:
        """Give ``caller`` its outcome for ``entry`` (which may go on for other callers)."""
        if caller.lazy and entry.callers is caller:
            self.book.close_if_done(caller)
            caller.defer(Pending(entry, kind, error, now, None))
            return
        self.book.hand(caller, self.statuses.outcome(entry, caller, kind, now, error))

    def _forget(self, entry: Entry, caller: Caller, kind: OutcomeKind) -> bool:
        """``caller`` has its outcome for ``entry``; drop the entry if nobody is left."""
        if entry.remove_caller(caller):
            if entry.look == caller.deadline:
                self.replan(entry)
            return True
        self._drop(entry, kind)
        if not caller.lazy:
            entry.seen = None  # its outcome holds it; a lazy caller reads it later
        return False

    def _drop(self, entry: Entry, kind: OutcomeKind) -> None:
        if self.entries.get(entry.export_id) is entry:
            del self.entries[entry.export_id]
            self.counts[kind] += 1
        self.queue.discard(entry)
        self.looks.paid(entry)
        outage = self.outage
        if outage is not None and outage.probe is entry and not entry.in_flight:
            outage.probe = None
