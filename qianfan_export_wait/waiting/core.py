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

import bisect
import heapq
import itertools
import logging
import marshal
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from math import floor, inf
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import (
    ApiError,
    AuthError,
    DownloadError,
    QianfanError,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
    UnexpectedError,
)
from ..models import ExportId, ExportState, ExportStatus, parse_export_status
from .outcomes import TERMINAL_KINDS, ExportOutcome, OutcomeKind, StateChange, WaiterEvent
from .policy import PROBE_MAX_DELAY, PollPolicy, Schedule

if TYPE_CHECKING:
    from ..download import DownloadRecord

__all__ = [
    "OUTAGE_AFTER_FAILURES",
    "Caller",
    "DueQueue",
    "Entry",
    "Outage",
    "Pending",
    "Scheduler",
    "entry_callers",
]

logger = logging.getLogger("qianfan_export_wait")

OUTAGE_AFTER_FAILURES = 8
"""Transient failures in a row, with no answer between them, that make an outage."""

_COMPACT_ABOVE = 10_000
"""With more entries than this, each keeps its last status packed (``_Packer``),
unpacked again only if needed."""


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


class Trouble:
    """An export that gets no answer: since when, how many failures in a row, the last."""

    __slots__ = ("errors_in_row", "last_error", "since")

    def __init__(self, since: float, error: ApiError) -> None:
        self.since = since
        self.errors_in_row = 0
        self.last_error = error


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
        # The last status seen: the object itself, or packed (see _COMPACT_ABOVE).
        self.seen: ExportStatus | bytes | None = None
        # When the last status was received (the clock's time), or None.
        self.answered: float | None = None
        # The deadline its last look is owed for (a key of LastLooks), or None: none owed
        # (no deadline, or the look was sent).
        self.look: float | None = None

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


class _Bucket(deque["Entry"]):
    """Entries due within one window; ``key`` is the one float all of them point to."""

    __slots__ = ("key",)

    def __init__(self, key: float) -> None:
        super().__init__()
        self.key = key


class DueQueue:
    """Entries by the time their next poll is due, in buckets ``resolution`` seconds wide.

    A bucket becomes ready when its window has passed, so every entry in it is due: polls
    falling due within one window go out in one wake-up, late by at most the window and
    never early. With ``resolution`` 0 every due time is its own bucket. A push costs
    O(1) (plus O(log buckets) for a new bucket), and a queued entry 8 bytes: it points to
    its bucket's key rather than holding a due time of its own.
    """

    __slots__ = ("_buckets", "_keys", "_resolution")

    def __init__(self, resolution: float) -> None:
        self._resolution = resolution
        self._buckets: dict[float, _Bucket] = {}
        self._keys: list[float] = []

    def __bool__(self) -> bool:
        return bool(self._keys)

    def _ready_time(self, key: float) -> float:
        resolution = self._resolution
        return key if resolution <= 0.0 else (key + 1.0) * resolution

    def due_time(self, entry: Entry) -> float | None:
        """When ``entry``'s bucket is ready, or ``None`` if it is not queued."""
        key = entry.due
        return None if key is None else self._ready_time(key)

    def push(self, entry: Entry, due: float) -> None:
        """Queue ``entry`` for ``due`` (moving it if it was queued for another time)."""
        resolution = self._resolution
        key = due if resolution <= 0.0 else float(floor(due / resolution))
        if entry.due == key:
            return  # already in that bucket
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
            heapq.heappush(self._keys, key)
        bucket.append(entry)
        entry.due = bucket.key

    def push_new(self, entries: list[Entry], due: float) -> None:
        """Queue ``entries``, none queued yet, all for ``due``."""
        if not entries:
            return
        resolution = self._resolution
        key = due if resolution <= 0.0 else float(floor(due / resolution))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
            heapq.heappush(self._keys, key)
        bucket.extend(entries)
        key = bucket.key
        for entry in entries:
            entry.due = key

    def ready_at(self) -> float:
        """When the earliest bucket is ready (``inf`` when empty)."""
        keys = self._keys
        return self._ready_time(keys[0]) if keys else inf

    def pop(self, now: float) -> Entry | None:
        """The next entry due at or before ``now``, unqueued; ``None`` if there is none."""
        keys = self._keys
        resolution = self._resolution
        while keys:
            key = keys[0]
            if (key if resolution <= 0.0 else (key + 1.0) * resolution) > now:
                return None
            entry = self._pop_from(key)
            if entry is not None:
                return entry
        return None

    def pop_earliest(self) -> Entry | None:
        """The entry due soonest (within a bucket), due or not."""
        keys = self._keys
        while keys:
            entry = self._pop_from(keys[0])
            if entry is not None:
                return entry
        return None

    def _pop_from(self, key: float) -> Entry | None:
        bucket = self._buckets[key]
        while bucket:
            entry = bucket.popleft()
            # Stale copies (moved, dropped, or popped already) are skipped here.
            if entry.due == key:
                entry.due = None
                if not bucket:
                    self._drop_bucket(key)
                return entry
        self._drop_bucket(key)
        return None

    def _drop_bucket(self, key: float) -> None:
        del self._buckets[key]
        heapq.heappop(self._keys)

    @staticmethod
    def discard(entry: Entry) -> None:
        """Unqueue ``entry`` (its stale copy is skipped when reached)."""
        entry.due = None


class LastLooks:
    """The last looks owed: every export with a deadline gets one poll shortly before it,
    and they are planned early enough that the rate limit can carry them all.

    Looks are owed per deadline (``Entry.look``). Sent in deadline order (earliest
    deadline first), the ``k``-th look must go by its deadline less ``k / rate``; the
    plan's ``start`` is the latest moment from which sending them back to back still
    makes every one in time, so polls go as late (as fresh) as the rate allows and no
    later. A poll sent within ``window`` of its deadline pays the look on the way.
    """

    __slots__ = ("_buckets", "_counts", "_keys", "_start", "margin", "per_request", "total")

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self.per_request = 0.0  # 1 / the rate
        self.total = 0
        self._counts: dict[float, int] = {}
        self._buckets: dict[float, deque[Entry]] = {}
        self._keys: list[float] = []  # sorted
        self._start: float | None = inf  # None: to be computed again

    def owe(self, entry: Entry) -> None:
        """``entry`` is owed a look for its (finite) deadline."""
        key = entry.deadline
        entry.look = key
        self.total += 1
        self._start = None
        count = self._counts.get(key)
        if count is None:
            self._counts[key] = 1
            self._buckets[key] = deque((entry,))
            bisect.insort(self._keys, key)
        else:
            self._counts[key] = count + 1
            self._buckets[key].append(entry)

    def owe_many(self, entries: list[Entry], key: float) -> None:
        """``owe`` for many new entries, all with deadline ``key``."""
        for entry in entries:
            entry.look = key
        count = self._counts.get(key)
        if count is None:
            self._counts[key] = len(entries)
            self._buckets[key] = deque(entries)
            bisect.insort(self._keys, key)
        else:
            self._counts[key] = count + len(entries)
            self._buckets[key].extend(entries)
        self.total += len(entries)
        self._start = None

    def paid(self, entry: Entry) -> None:
        """``entry`` owes no look any more (sent, dropped, or its deadline moved)."""
        key = entry.look
        if key is None:
            return
        entry.look = None
        self.total -= 1
        count = self._counts[key] - 1
        if count:
            self._counts[key] = count
        else:
            del self._counts[key]
            del self._buckets[key]
            del self._keys[bisect.bisect_left(self._keys, key)]
        # Fewer looks owed: the plan may start later (fresher looks), never sooner.
        self._start = None

    def set_rate(self, rate: float) -> None:
        """The rate the limiter allows now (requests per second)."""
        per_request = 0.0 if rate == inf or rate <= 0 else 1.0 / rate
        if per_request != self.per_request:
            self.per_request = per_request
            self._start = None

    def start(self) -> float:
        """When looks must begin to go, one after another, so that all are in time
        (``inf`` when none is owed)."""
        start = self._start
        if start is not None:
            return start
        per_request = self.per_request
        total = self.total
        best = inf
        owed = 0
        counts = self._counts
        for key in self._keys:
            if key - total * per_request >= best:
                break  # no later deadline can start sooner
            owed += counts[key]
            term = key - owed * per_request
            if term < best:
                best = term
        start = self._start = best - self.margin if best < inf else inf
        return start

    def pop(self) -> Entry | None:
        """The entry owing the look with the earliest deadline, its look paid."""
        keys = self._keys
        while keys:
            key = keys[0]
            bucket = self._buckets[key]
            while bucket:
                entry = bucket.popleft()
                if entry.look == key:  # (stale copies: paid or moved since)
                    self.paid(entry)
                    return entry
            # Only stale copies were left: the count says otherwise only by a bug.
            raise AssertionError("LastLooks: a count without its entries")  # pragma: no cover
        return None


class Outage:
    """The service gives no answers: only one probe is in flight, on a capped backoff."""

    __slots__ = ("last_error", "probe", "probe_attempt", "probe_due", "started")

    def __init__(self, started: float, last_error: ApiError) -> None:
        self.started = started
        self.last_error = last_error
        self.probe: Entry | None = None
        self.probe_attempt = 0
        self.probe_due = started


class _Packer:
    """Packs a status into about 90 bytes where the object takes a kilobyte: its log id,
    then its values marshalled and deflated against the first status packed (statuses
    share most of their text: keys, states, path prefixes)."""

    __slots__ = ("_inflate", "_keys", "_primed", "_zdict")

    def __init__(self) -> None:
        self._keys: tuple[str, ...] | None = None
        self._zdict = b""
        # A compressor with the dictionary loaded, copied for each status: cheaper than
        # loading the dictionary into a new one every time.
        self._primed: Any = None
        self._inflate: Any = None

    @staticmethod
    def _log_id(log_id: str | None) -> bytes:
        """A two-byte length (65535: none), then the log id's text."""
        if log_id is None:
            return b"\xff\xff"
        text = log_id.encode("utf-8", "surrogatepass")
        return len(text).to_bytes(2, "little") + text

    @staticmethod
    def _split(packed: bytes) -> tuple[str | None, int]:
        size = int.from_bytes(packed[:2], "little")
        if size == 0xFFFF:
            return None, 2
        return packed[2 : 2 + size].decode("utf-8", "surrogatepass"), 2 + size

    def pack(self, status: ExportStatus) -> bytes:
        """The status packed."""
        raw = status.raw
        keys = tuple(raw)
        if self._keys is None:
            self._keys = keys
            self._zdict = marshal.dumps(tuple(raw.values()))
            self._primed = zlib.compressobj(1, zlib.DEFLATED, -9, 1, zdict=self._zdict)
            self._inflate = zlib.decompressobj(-9, zdict=self._zdict)
        payload = marshal.dumps(tuple(raw.values()) if keys == self._keys else dict(raw))
        packer = self._primed.copy()
        body: bytes = packer.compress(payload) + packer.flush()
        return self._log_id(status.log_id) + body

    def with_log_id(self, packed: bytes, log_id: str | None) -> bytes:
        """``packed`` with another log id (no unpacking: the cheap update)."""
        return self._log_id(log_id) + packed[self._split(packed)[1] :]

    def unpack(self, packed: bytes) -> ExportStatus:
        """The status packed."""
        log_id, start = self._split(packed)
        inflate = self._inflate.copy()
        values = marshal.loads(inflate.decompress(packed[start:]))
        raw = (
            values if isinstance(values, dict) else dict(zip(self._keys or (), values, strict=True))
        )
        return parse_export_status({"log_id": log_id, "result": raw})


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
        self.outage: Outage | None = None
        self.failures_in_row = 0
        self._packer = _Packer()
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
        before = entry.deadline
        entry.add_caller(caller)
        if entry.deadline != before:
            self._replan(entry)
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
            before = entry.deadline
            if not entry.remove_caller(caller):
                self._drop(entry, OutcomeKind.PENDING)
                if entry.in_flight:
                    abandoned.append(entry)
            elif entry.deadline != before:
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
                    entry = looks.pop()  # its answer is on the way: that is its look
                if entry is not None:
                    self.queue.discard(entry)
            if entry is None:
                entry = self.queue.pop(now)
                if (
                    entry is not None
                    and entry.look is not None
                    and now >= entry.deadline - self.look_window
                ):
                    looks.paid(entry)
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
        if entry.look is None and entry.deadline < inf and entry.callers is not None:
            self.looks.owe(entry)  # a throttle tells nothing: the look is owed again
        if self._expire_callers_of(entry, now):
            # Not an answer about the export: back in line without spending its backoff.
            self._schedule(entry, now + (error.retry_after or 0.0))

    def on_transient(self, entry: Entry, error: TransientError, now: float) -> None:
        """No usable answer (connection refused, 5xx, reset, timeout, bad body)."""
        entry.in_flight = False
        self.retries += 1
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
        elif self.failures_in_row >= OUTAGE_AFTER_FAILURES:
            self._start_outage(error, now)
        if entry.callers is None or not self._expire_callers_of(entry, now):
            return
        if self._gave_up(entry, error, now):
            return
        delay = self.retry_schedule.delay(
            trouble.errors_in_row, started=entry.started, now=now, error=error
        )
        if error.retry_after is not None:
            delay = error.retry_after
        logger.debug("export %r: %s; retrying in %.2f s", entry.export_id, error, delay)
        self._schedule(entry, now + delay)

    def on_rejected(self, entry: Entry, error: ApiError, now: float) -> None:
        """An answer that this export's request can never succeed (e.g. unknown id)."""
        self._answered(entry, now)
        logger.debug("export %r: %s", entry.export_id, error)
        self._finish(entry, OutcomeKind.ERROR, now, error)

    def on_auth_error(self, entry: Entry, error: AuthError, now: float) -> None:
        """Credentials rejected: every export ends with ``error`` and no poll goes again."""
        entry.in_flight = False
        if self.auth_error is None:
            self.auth_error = error
        self.end_all(error, now)

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
            self._finish(entry, OutcomeKind.ERROR, now, ServiceUnavailableError(now - since, error))
            return True
        return False

    def _timeout_error(self, entry: Entry, now: float) -> QianfanError | None:
        """What a timeout carries: why no answer came, if the service was not answering."""
        outage = self.outage
        trouble = entry.trouble
        if trouble is not None:
            return ServiceUnavailableError(max(0.0, now - trouble.since), trouble.last_error)
        if outage is None:
            return None
        since = max(outage.started, entry.started)
        return ServiceUnavailableError(max(0.0, now - since), outage.last_error)

    def _schedule(self, entry: Entry, due: float) -> None:
        """Queue the next poll; while a last look is owed, never later than the nearest
        deadline of its callers (the Smithy rule; ``LastLooks`` sends it sooner when the
        rate limit needs the time)."""
        deadline = entry.deadline
        if entry.look is not None and due > deadline:
            due = deadline
        self.queue.push(entry, due)

    def _replan(self, entry: Entry) -> None:
        """``entry``'s nearest deadline moved: the look owed is for the new one."""
        self.looks.paid(entry)
        if entry.deadline < inf and entry.callers is not None:
            self.looks.owe(entry)

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
        before = entry.deadline
        if entry.remove_caller(caller):
            if entry.deadline != before:
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
