"""The waiter's scheduling core: pure bookkeeping, no asyncio and no clock of its own.

The driver passes the time in, asks what to poll next, sends it, and reports the answer
back; the core decides every outcome and hands it to the callers waiting for it::

    callers (wait, wait_all, as_completed)  --join/leave-->  Entry per export id
    Entry  --due time-->  DueQueue  --take()-->  driver sends  --on_*()-->  outcome
    Caller deadlines (a heap)  --expire()-->  timeout outcomes, polled or not
    a run of transient failures  -->  one Outage: a single probe, then everyone at once

One ``Entry`` serves every caller of its export id: they share its polls and get the
same outcome. An entry that no caller wants any more is dropped and polled no more.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from math import inf
from typing import TYPE_CHECKING

from ..errors import (
    ApiError,
    AuthError,
    DownloadError,
    QianfanError,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
    UnexpectedAnswerError,
    UnexpectedError,
)
from ..models import ExportId, ExportStatus
from .duequeue import DueQueue
from .entries import Caller, Entry, Pending, PendingRun, entry_callers, status_age
from .health import OUTAGE_AFTER_FAILURES, Outage, Trouble
from .looks import LastLooks
from .outcomes import TERMINAL_KINDS, ExportOutcome, OutcomeKind, StateChange, WaiterEvent
from .packing import StatusPacker
from .policy import PROBE_MAX_DELAY, PollPolicy, Schedule

if TYPE_CHECKING:
    from ..download import DownloadRecord


__all__ = [
    "OUTAGE_AFTER_FAILURES",
    "Caller",
    "DueQueue",
    "Entry",
    "LastLooks",
    "Outage",
    "Pending",
    "PendingRun",
    "Scheduler",
    "entry_callers",
]

logger = logging.getLogger("qianfan_export_wait")

_COMPACT_ABOVE = 10_000
"""With more entries than this, each keeps its last status packed (``StatusPacker``),
unpacked again only if needed."""


def _no_answer(unavailable_for: float, last_error: ApiError) -> QianfanError:
    """What an export that got no usable answer carries: the protocol error itself if
    the service did answer (about another export), else ``ServiceUnavailableError``."""
    if isinstance(last_error, UnexpectedAnswerError):
        return last_error
    return ServiceUnavailableError(unavailable_for, last_error)


class Scheduler:
    """Every export a waiter is waiting on, and the rules that end each caller's wait.

    ``notify`` receives state changes and final outcomes (``on_update``). All methods
    take the current time from the caller and never block.
    """

    def __init__(
        self,
        policy: PollPolicy,
        *,
        resolution: float = 0.0,
        notify: Callable[[WaiterEvent], None] | None = None,
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
        self._deadlines: list[tuple[float, int, Caller]] = []
        self._closed_deadlines = 0
        self._order = itertools.count()
        self.callers = 0
        # Whether a Done export waits for its file before its outcome (a downloader).
        self.downloads = False
        self.proven = False
        self.auth_error: AuthError | None = None
        self.auth_failed_at = -inf
        self.outage: Outage | None = None
        self.failures_in_row = 0
        self._packer = StatusPacker()
        # Counts over the waiter's life.
        self.total = 0
        self.counts = dict.fromkeys(OutcomeKind, 0)
        self.requests = 0
        self.throttled = 0
        self.retries = 0

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
            self._replan(entry)  # its deadline may be one no poll has looked near yet
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
            heapq.heappush(self._deadlines, (caller.deadline, next(self._order), caller))
        self._close_if_done(caller)

    def watch(self, caller: Caller) -> None:
        """Start counting ``caller`` and keep its deadline (after its ``join`` calls)."""
        if caller.closed:
            return
        self.callers += 1
        if caller.deadline < inf:
            heapq.heappush(self._deadlines, (caller.deadline, next(self._order), caller))

    def leave(self, caller: Caller) -> list[Entry]:
        """``caller`` stops waiting; return the entries in flight that nobody wants now."""
        if caller.closed:
            return []
        self._close(caller)
        abandoned = []
        for entry in caller.entries():
            if not entry.has_caller(caller):
                continue
            if not entry.remove_caller(caller):
                self._drop(entry, OutcomeKind.PENDING)
                if entry.in_flight:
                    abandoned.append(entry)
            elif entry.look == caller.deadline:
                self._replan(entry)
        return abandoned

    def next_deadline(self) -> float:
        """The earliest deadline of a caller still waiting (``inf`` if none)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].closed:
            heapq.heappop(deadlines)
            self._closed_deadlines -= 1
        return deadlines[0][0] if deadlines else inf

    def expire(self, now: float) -> None:
        """End the wait of every caller whose deadline has passed, polled or not.

        An export with a poll in flight is decided when that answer comes (within the
        request timeout); the others end now as ``timeout``.
        """
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            caller = heapq.heappop(deadlines)[2]
            if caller.closed:
                self._closed_deadlines -= 1
                continue
            if caller.lazy:
                self._expire_lazily(caller, now)
                continue
            for entry in list(caller.entries()):
                if not entry.in_flight and entry.has_caller(caller):
                    self._deliver(
                        entry, caller, OutcomeKind.TIMEOUT, now, self._timeout_error(entry, now)
                    )
                    self._forget(entry, caller, OutcomeKind.TIMEOUT)

    def _expire_lazily(self, caller: Caller, now: float) -> None:
        """``expire`` for a lazy caller: its timeouts go as one ``PendingRun``, so a
        deadline shared by a hundred thousand exports costs a list, not an outcome each."""
        run: list[Entry] = []
        outage = self.outage
        for entry in list(caller.entries()):
            if entry.in_flight or not entry.has_caller(caller):
                continue
            if entry.callers is not caller:  # shared with others: its outcome now
                self._deliver(
                    entry, caller, OutcomeKind.TIMEOUT, now, self._timeout_error(entry, now)
                )
                self._forget(entry, caller, OutcomeKind.TIMEOUT)
                continue
            if outage is not None and entry.trouble is None:
                # Read later, the timeout must still say the service was not answering.
                since = max(outage.started, entry.started)
                entry.trouble = Trouble(since, outage.last_error)
            run.append(entry)
            self._forget(entry, caller, OutcomeKind.TIMEOUT)
        if run:
            caller.waiting -= len(run) - 1
            self._close_if_done(caller)
            run.reverse()  # read from the end, so in the order they were asked for
            caller.defer(PendingRun(OutcomeKind.TIMEOUT, now, run))

    def timed_out(self, entry: Entry, caller: Caller, at: float) -> ExportOutcome:
        """The ``timeout`` outcome of a ``PendingRun``'s ``entry``, for ``caller``."""
        outcome = ExportOutcome(
            entry.export_id,
            OutcomeKind.TIMEOUT,
            self.last_status(entry),
            self._timeout_error(entry, at),
            entry.polls,
            at - caller.started,
            status_age=status_age(entry, at),
        )
        entry.seen = None
        return outcome

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
        deadline = self.next_deadline()
        return ready if ready < deadline else deadline

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
                    self._replan(entry)  # a later caller's deadline: its look is owed
            if entry is None:
                entry = self.queue.pop(now)
                if entry is not None:
                    entry.sent = now
                    look = entry.look
                    if look is not None and now >= look - self.look_window:
                        self._replan(entry)
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

    # -- answers ---------------------------------------------------------------------

    def on_status(self, entry: Entry, status: ExportStatus, now: float) -> bool:
        """A status answer for ``entry``. Returns ``True`` when it is ``Done`` and waits
        for its file (with ``downloads`` on): report that with ``on_downloaded``."""
        entry.in_flight = False
        entry.answered = now
        if entry.trouble is not None or self.failures_in_row or not self.proven:
            self._answered(entry, now)
        state = status.state
        kind = TERMINAL_KINDS.get(state)
        if kind is not None:
            self._remember(entry, status, terminal=True)
            if kind is OutcomeKind.DONE and self.downloads:
                entry.in_flight = True  # no deadline ends it now: the file is coming
                return True
            self._finish(entry, kind, now)
            return False
        previous = entry.state
        self._remember(entry, status)
        if previous != state and self.notify is not None:
            self.notify(
                StateChange(
                    entry.export_id,
                    None if previous is None else str(previous),
                    status.state_name,
                    status,
                    entry.polls,
                    now - entry.started,
                )
            )
        if entry.deadline > now or self._expire_callers_of(entry, now):
            if entry.look is None:
                self._replan(entry)  # a later caller's deadline, if any, is owed a look
            attempt = entry.attempt = entry.attempt + 1
            due = now + self.poll_schedule.delay(
                attempt, started=entry.started, now=now, result=status
            )
            self._schedule(entry, due)
        return False

    def on_downloaded(
        self,
        entry: Entry,
        now: float,
        file: DownloadRecord | None = None,
        error: DownloadError | None = None,
    ) -> None:
        """The file of a ``Done`` export was fetched (``file``), or could not be (``error``):
        the export's outcome is ``done`` either way."""
        entry.in_flight = False
        if entry.callers is not None:
            self._finish(entry, OutcomeKind.DONE, now, file=file, download_error=error)

    def on_throttled(self, entry: Entry, error: ThrottledError, now: float) -> None:
        """The server refused the poll for the account's rate limit."""
        self._answered(entry, now)
        self.throttled += 1
        # A throttle tells nothing: the look is owed again, for the nearest deadline.
        entry.sent = -inf
        self._replan(entry)
        if self._expire_callers_of(entry, now):
            # Not an answer about the export: back in line without spending its backoff.
            self._schedule(entry, now + (self.policy.bounded_retry_after(error.retry_after) or 0.0))

    def on_transient(self, entry: Entry, error: TransientError, now: float) -> None:
        """No usable answer (connection refused, 5xx, reset, timeout, bad body)."""
        entry.in_flight = False
        self.retries += 1
        answered = isinstance(error, UnexpectedAnswerError)
        if answered:  # an answer, about another export: the service is up
            trouble = entry.trouble
            self._answered(entry, now)
            entry.trouble = trouble
        else:
            self.failures_in_row += 1
        outage = self.outage
        trouble = entry.trouble
        if trouble is None:
            # Within an outage, unavailable since it began (or since it was asked for).
            since = now if outage is None else max(outage.started, entry.started)
            trouble = entry.trouble = Trouble(since, error)
        trouble.errors_in_row += 1
        trouble.last_error = error
        if outage is not None:
            outage.last_error = error
            if outage.probe is entry:
                self._probe_failed(outage, entry, now)
        elif not answered and self.failures_in_row >= OUTAGE_AFTER_FAILURES:
            self._start_outage(error, now)
        if entry.callers is None or not self._expire_callers_of(entry, now):
            return
        if entry.look is None:
            self._replan(entry)
        if self._gave_up(entry, error, now):
            return
        delay = self.retry_schedule.delay(
            trouble.errors_in_row, started=entry.started, now=now, error=error
        )
        if error.retry_after is not None:
            delay = self.policy.bounded_retry_after(error.retry_after) or 0.0
        budget = self.policy.max_unavailable
        if budget is not None and trouble.since + budget - now < delay:
            delay = max(trouble.since + budget - now, 0.0)  # looked at again when it runs out
        logger.debug("export %r: %s; retrying in %.2f s", entry.export_id, error, delay)
        self._schedule(entry, now + delay)

    def on_rejected(self, entry: Entry, error: ApiError, now: float) -> None:
        """An answer that this export's request can never succeed (e.g. unknown id)."""
        self._answered(entry, now)
        logger.debug("export %r: %s", entry.export_id, error)
        self._finish(entry, OutcomeKind.ERROR, now, error)

    def on_auth_error(self, entry: Entry, error: AuthError, now: float) -> None:
        """Credentials rejected: every export ends with ``error``, and new callers get it
        at once until ``policy.auth_cooldown`` has passed (``auth_refusal``); then one
        request at a time tries again."""
        entry.in_flight = False
        self.auth_error = error
        self.auth_failed_at = now
        self.proven = False
        self.end_all(error, now)

    def auth_refusal(self, now: float) -> AuthError | None:
        """The authentication failure a new caller gets at once: the last one, until its
        cool-down has passed or an answer has proven the credentials again."""
        error = self.auth_error
        if error is None or now - self.auth_failed_at >= self.policy.auth_cooldown:
            return None
        return error

    def on_cancelled(self, entry: Entry) -> None:
        """The poll of ``entry`` was cancelled (nobody wanted it, or the waiter closed)."""
        entry.in_flight = False
        if self.outage is not None and self.outage.probe is entry:
            self.outage.probe = None

    def on_unexpected(self, entry: Entry, error: BaseException, now: float) -> None:
        """Not an API error (a strategy, a limiter or the client raised): the export ends as
        ``error`` carrying it, and the other exports go on."""
        entry.in_flight = False
        if self.outage is not None and self.outage.probe is entry:
            self.outage.probe = None
        wrapped = UnexpectedError(error, f"polling export {entry.export_id!r}")
        if entry.callers is not None:
            self._finish(entry, OutcomeKind.ERROR, now, wrapped)

    def end_all(self, error: QianfanError, now: float) -> None:
        """End every export as ``error`` carrying ``error``."""
        for entry in list(self.entries.values()):
            self._finish(entry, OutcomeKind.ERROR, now, error)

    def abort_all(self, error: BaseException) -> None:
        """End every caller's wait with ``error`` raised, and forget every export."""
        callers: dict[int, Caller] = {}
        for entry in self.entries.values():
            for caller in entry.caller_list():
                callers[id(caller)] = caller
            entry.callers = None
            self.queue.discard(entry)
        self.entries.clear()
        self._deadlines.clear()
        self.looks = LastLooks(self.looks.margin)
        for caller in callers.values():
            if not caller.closed:
                self._close(caller)
                caller.abort(error)

    # -- what is known ---------------------------------------------------------------

    def last_status(self, entry: Entry) -> ExportStatus | None:
        """The last status seen for ``entry``."""
        seen = entry.seen
        if type(seen) is bytes:
            return self._packer.unpack(seen)
        return seen  # type: ignore[return-value]

    def snapshot(self, entry: Entry, caller: Caller, now: float) -> ExportOutcome:
        """A ``pending`` outcome: what is known of ``entry`` now, for ``caller``."""
        return ExportOutcome(
            entry.export_id,
            OutcomeKind.PENDING,
            self.last_status(entry),
            None if entry.trouble is None else entry.trouble.last_error,
            entry.polls,
            now - caller.started,
            status_age=status_age(entry, now),
        )

    def unavailable_for(self, now: float) -> float | None:
        """Seconds the service has been unavailable, or ``None`` while it answers."""
        return None if self.outage is None else now - self.outage.started

    def in_flight(self) -> Iterator[Entry]:
        """Entries with a poll in flight."""
        return (entry for entry in self.entries.values() if entry.in_flight)

    # -- internals -------------------------------------------------------------------

    def _answered(self, entry: Entry, now: float) -> None:
        """The service answered (status, throttle or refusal): it is up, and the
        credentials work."""
        entry.in_flight = False
        if entry.trouble is None and not self.failures_in_row and self.proven:
            return  # nothing to reset: the usual case
        entry.trouble = None
        self.proven = True
        self.auth_error = None
        self.failures_in_row = 0
        if self.outage is not None:
            self._end_outage(now)

    def _start_outage(self, error: TransientError, now: float) -> None:
        self.outage = Outage(now, error)
        self.outage.probe_due = now + self._probe_delay(1, error, now)
        logger.warning(
            "the service is not answering (%d requests in a row failed, last: %s); "
            "polling paused, one probe at a time until it answers",
            self.failures_in_row,
            error,
        )

    def _probe_delay(self, attempt: int, error: BaseException, now: float) -> float:
        delay = self.retry_schedule.delay(attempt, started=now, now=now, error=error)
        return min(delay, PROBE_MAX_DELAY)

    def _probe_failed(self, outage: Outage, entry: Entry, now: float) -> None:
        outage.probe = None
        outage.probe_attempt += 1
        outage.probe_due = now + self._probe_delay(outage.probe_attempt, outage.last_error, now)
        budget = self.policy.max_unavailable
        if budget is None or now - outage.started < budget:
            return
        error = outage.last_error
        for other in list(self.entries.values()):
            if other is entry or other.in_flight:
                continue
            trouble = other.trouble
            since = max(outage.started, other.started) if trouble is None else trouble.since
            if now - since >= budget:
                self._finish(
                    other, OutcomeKind.ERROR, now, ServiceUnavailableError(now - since, error)
                )

    def _end_outage(self, now: float) -> None:
        outage = self.outage
        assert outage is not None
        self.outage = None
        retried = 0
        for entry in self.entries.values():
            if entry.trouble is not None and not entry.in_flight:
                due = self.queue.due_time(entry)
                if due is None or due > now:
                    self.queue.push(entry, now)
                retried += 1
        logger.warning(
            "the service answers again after %.1f s; re-polling %d exports that saw errors",
            now - outage.started,
            retried,
        )

    def _gave_up(self, entry: Entry, error: TransientError, now: float) -> bool:
        legacy = self.policy.max_consecutive_errors
        trouble = entry.trouble
        assert trouble is not None
        if legacy is not None and trouble.errors_in_row >= legacy:
            self._finish(entry, OutcomeKind.ERROR, now, error)
            return True
        budget = self.policy.max_unavailable
        since = trouble.since
        if budget is not None and now - since >= budget:
            self._finish(entry, OutcomeKind.ERROR, now, _no_answer(now - since, error))
            return True
        return False

    def _timeout_error(self, entry: Entry, now: float) -> QianfanError | None:
        """What a timeout carries: why no answer came, if the service was not answering."""
        outage = self.outage
        trouble = entry.trouble
        if trouble is not None:
            return _no_answer(max(0.0, now - trouble.since), trouble.last_error)
        if outage is None:
            return None
        since = max(outage.started, entry.started)
        return ServiceUnavailableError(max(0.0, now - since), outage.last_error)

    def _schedule(self, entry: Entry, due: float) -> None:
        """Queue the next poll; while a last look is owed, never later than the nearest
        deadline of its callers (the Smithy rule; ``LastLooks`` sends it sooner when the
        rate limit needs the time)."""
        look = entry.look
        if look is not None and due > look:
            due = look
        self.queue.push(entry, due)

    def _replan(self, entry: Entry) -> None:
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

    def _expire_callers_of(self, entry: Entry, now: float) -> bool:
        """After an answer: end the wait of callers past their deadline; return whether
        anyone still waits."""
        if entry.deadline > now:
            return entry.callers is not None
        for caller in entry.caller_list():
            if caller.deadline <= now:
                self._deliver(
                    entry, caller, OutcomeKind.TIMEOUT, now, self._timeout_error(entry, now)
                )
                if not self._forget(entry, caller, OutcomeKind.TIMEOUT):
                    return False
        return entry.callers is not None

    def _finish(
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
            self._close_if_done(callers)
            files = None if file is None and download_error is None else (file, download_error)
            callers.defer(Pending(entry, kind, error, now, files))
            return
        first: ExportOutcome | None = None
        status = self.last_status(entry)
        age = status_age(entry, now)
        for caller in [] if callers is None else entry_callers(callers):
            outcome = ExportOutcome(
                entry.export_id,
                kind,
                status,
                error,
                entry.polls,
                now - caller.started,
                file,
                download_error,
                age,
            )
            first = first or outcome
            self._hand(caller, outcome)
        entry.seen = None  # the outcomes hold it now; the entry may outlive them
        if first is not None and notify is not None:
            notify(first)

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
            self._close_if_done(caller)
            caller.defer(Pending(entry, kind, error, now, None))
            return
        outcome = ExportOutcome(
            entry.export_id,
            kind,
            self.last_status(entry),
            error,
            entry.polls,
            now - caller.started,
            status_age=status_age(entry, now),
        )
        self._hand(caller, outcome)

    def materialize(self, pending: Pending, caller: Caller) -> ExportOutcome:
        """The outcome ``caller`` (lazy) was given as ``pending``."""
        entry = pending.entry
        file, download_error = pending.files or (None, None)
        outcome = ExportOutcome(
            entry.export_id,
            pending.kind,
            self.last_status(entry),
            pending.error,
            entry.polls,
            pending.at - caller.started,
            file,
            download_error,
            status_age(entry, pending.at),
        )
        if entry.callers is None:
            entry.seen = None  # dropped: nobody else will read it
        return outcome

    def _close_if_done(self, caller: Caller) -> None:
        caller.waiting -= 1
        if caller.waiting <= 0 and not caller.closed:
            self._close(caller)

    def _hand(self, caller: Caller, outcome: ExportOutcome) -> None:
        self._close_if_done(caller)
        caller.deliver(outcome)

    def _close(self, caller: Caller) -> None:
        caller.closed = True
        self.callers -= 1
        if not self.callers:
            # Nobody waits: every deadline kept is a finished caller's. Back to idle size.
            self._deadlines.clear()
            self._closed_deadlines = 0
            return
        if caller.deadline < inf:
            # Finished callers stay in the deadline heap until their deadline comes up;
            # in a long-lived waiter that could be hours of them, so sweep now and then.
            self._closed_deadlines += 1
            deadlines = self._deadlines
            if self._closed_deadlines > 1000 and self._closed_deadlines * 2 > len(deadlines):
                deadlines[:] = [item for item in deadlines if not item[2].closed]
                heapq.heapify(deadlines)
                self._closed_deadlines = 0

    def _forget(self, entry: Entry, caller: Caller, kind: OutcomeKind) -> bool:
        """``caller`` has its outcome for ``entry``; drop the entry if nobody is left."""
        if entry.remove_caller(caller):
            if entry.look == caller.deadline:
                self._replan(entry)
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

    def _remember(self, entry: Entry, status: ExportStatus, *, terminal: bool = False) -> None:
        """Keep ``status`` as the last one seen, packed small when many exports wait."""
        previous = entry.state
        entry.state = status.state
        if terminal or len(self.entries) <= _COMPACT_ABOVE:
            entry.seen = status
            return
        seen = entry.seen
        if previous == status.state and type(seen) is bytes:
            # An export's status changes with its state; within one state only the log
            # id moves, so the packed rest stays (packing is what costs).
            entry.seen = self._packer.with_log_id(seen, status.log_id)
            return
        entry.seen = self._packer.pack(status)
