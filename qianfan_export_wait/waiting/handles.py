"""The callers of a waiter: a handle for one export (``submit``), a batch (``wait_all``),
and a stream of outcomes as each is known (``as_completed``). Each reaches its waiter only
through a ``Membership``.

Who cleans up after a caller is explicit: a handle leaves when its future is cancelled; a
stream leaves on ``aclose``/``release`` or ``async with``, and a plain ``async for`` over it
leaves when ``__anext__`` raises (a cancellation, an error) or when its iterator is dropped
(``break``), through a finalizer registered when the loop began.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from math import inf
from types import TracebackType
from typing import Any

from ..models import ExportId
from .entries import Caller, Entry, Pending, PendingRun
from .membership import Membership
from .outcomes import ExportOutcome, OutcomeKind
from .policy import POLICY_TIMEOUT, UsePolicyTimeout

__all__ = ["ExportHandle", "OutcomeStream"]


def _leave_quietly(caller: Caller, members: Membership) -> None:
    # RuntimeError: the event loop is gone, so nothing runs any more anyway.
    with contextlib.suppress(RuntimeError):
        members.leave(caller)


class ExportHandle(Caller):
    """One caller's wait for one export: ``await handle`` gives its ``ExportOutcome``.

    Cancelling it (``handle.cancel()``, or cancelling a task that awaits it) ends only
    this caller's wait; the export is polled no more once nobody waits for it.
    """

    __slots__ = ("_entry", "_future", "_members", "export_id")

    def __init__(
        self, members: Membership, export_id: ExportId, started: float, deadline: float
    ) -> None:
        super().__init__(started, deadline)
        self.export_id = export_id
        self._members = members
        self._entry: Entry | None = None
        self._future: asyncio.Future[ExportOutcome] = asyncio.get_running_loop().create_future()
        self._future.add_done_callback(self._on_done)

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "waiting"
        return f"<ExportHandle {self.export_id!r} {state}>"

    def __await__(self) -> Generator[Any, None, ExportOutcome]:
        return self._future.__await__()

    def _on_done(self, future: asyncio.Future[ExportOutcome]) -> None:
        if future.cancelled():
            _leave_quietly(self, self._members)

    def deliver(self, outcome: ExportOutcome) -> None:
        """Resolve the handle with ``outcome``."""
        self._entry = None  # a handle kept for long keeps no export state alive
        if not self._future.done():
            self._future.set_result(outcome)

    def abort(self, error: BaseException) -> None:
        """Resolve the handle with ``error`` raised."""
        if not self._future.done():
            self._future.set_exception(error)
            self._future.exception()  # retrieved: no warning if nobody awaits it

    def entries(self) -> Iterable[Entry]:
        """The one entry this handle waits on."""
        return () if self._entry is None else (self._entry,)

    def cancel(self) -> bool:
        """Stop waiting; return ``False`` if the outcome was already known."""
        return self._future.cancel()

    def done(self) -> bool:
        """Whether the outcome is known (or the handle was cancelled)."""
        return self._future.done()

    def outcome(self) -> ExportOutcome:
        """The outcome; ``asyncio.InvalidStateError`` if not known yet."""
        return self._future.result()

    def snapshot(self) -> ExportOutcome:
        """The outcome if known, else a ``pending`` one with the last status seen."""
        future = self._future
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        entry = self._entry
        if entry is None:  # pragma: no cover - an entry is set right after creation
            return ExportOutcome(self.export_id, OutcomeKind.PENDING, None, None, 0, 0.0)
        return self._members.snapshot(entry, self, self._members.clock.now())


class _Batch(Caller):
    """A ``wait_all`` call: every outcome, then one wake-up."""

    __slots__ = ("_entries", "future", "outcomes", "remaining")

    def __init__(self, started: float, deadline: float, count: int) -> None:
        super().__init__(started, deadline)
        self._entries: list[Entry] = []
        self.outcomes: dict[ExportId, ExportOutcome] = {}
        self.remaining = count
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, outcome: ExportOutcome) -> None:
        self.outcomes[outcome.export_id] = outcome
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)

    def abort(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
            self.future.exception()

    def entries(self) -> Iterable[Entry]:
        return self._entries


class OutcomeStream(Caller):
    """The outcomes of some exports, each as soon as it is known:
    ``async for outcome in waiter.as_completed(ids)``.

    Polling starts at the first iteration. Leaving the ``async for`` loop stops polling at
    once, whatever else still references the stream; so does ``aclose()`` or leaving
    ``async with stream:`` (inside which the loop may be left and entered again).
    ``unfinished()`` gives a ``pending`` outcome for every export not yet yielded.
    """

    __slots__ = (
        "_delivered",
        "_entered",
        "_entries",
        "_error",
        "_ids",
        "_joined",
        "_joiner",
        "_left",
        "_members",
        "_ready",
        "_remaining",
        "_runs",
        "_signal",
        "_started_flag",
        "_tasks",
        "_timeout",
    )

    def __init__(
        self,
        members: Membership,
        ids: list[ExportId],
        timeout: float | UsePolicyTimeout | None = POLICY_TIMEOUT,
    ) -> None:
        super().__init__(0.0, inf)
        self._timeout = timeout
        self._members = members
        self._ids: list[ExportId] | None = ids
        self._entries: list[Entry] = []
        self._ready: deque[ExportOutcome | Pending] = deque()
        # Runs of outcomes that came at once (a deadline), read after the single ones: an
        # answer that comes while a run is read goes first, so a reader that keeps input
        # order need not hold a run's worth of lines behind a poll that was in flight.
        self._runs: deque[PendingRun] = deque()
        self._remaining = len(ids)
        self._delivered = 0
        self._signal: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._started_flag = False
        self._entered = False
        self._left: list[Entry] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Many ids join a chunk at a time, so the first request goes out at once: the
        # ids from _joined on are still to join.
        self._joined = 0
        self._joiner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<OutcomeStream {self._remaining} to come>"

    # -- the caller side ------------------------------------------------------------------

    lazy = True

    def deliver(self, outcome: ExportOutcome) -> None:
        self._took_one(outcome)

    def defer(self, pending: Pending | PendingRun) -> None:
        self._took_one(pending)

    def _took_one(self, item: ExportOutcome | Pending | PendingRun) -> None:
        if isinstance(item, PendingRun):
            self._runs.append(item)
            count = len(item.entries)
        else:
            self._ready.append(item)
            count = 1
        self._remaining -= count
        self._delivered += count
        entries = self._entries
        if self._delivered > 1000 and self._delivered * 2 > len(entries):
            # Let finished exports go: a long stream keeps only those still to come.
            self._entries = [entry for entry in entries if entry.has_caller(self)]
            self._delivered = 0
        self._wake()

    def abort(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def entries(self) -> Iterable[Entry]:
        return self._entries

    def _wake(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # -- the user side ---------------------------------------------------------------------

    _JOIN_CHUNK = 5000

    def _start(self) -> None:
        if self._started_flag:
            return
        members = self._members
        members.check_usable()
        self._started_flag = True
        now = members.clock.now()
        self.started = now
        self.deadline = members.deadline(now, self._timeout)
        ids = self._ids or []
        if len(ids) <= self._JOIN_CHUNK:
            self._ids = None
            self._entries.extend(members.join_many(self, ids, first=True))
            return
        self.waiting += 1  # not done before every id has joined
        self._joined = self._JOIN_CHUNK
        self._entries.extend(members.join_many(self, ids[: self._JOIN_CHUNK], first=True))
        self._joiner = asyncio.get_running_loop().create_task(self._join_the_rest())

    async def _join_the_rest(self) -> None:
        members = self._members
        ids = self._ids
        assert ids is not None
        while self._joined < len(ids):
            await asyncio.sleep(0)  # the loop (and the polls) go on between chunks
            if self.closed:
                return
            chunk = ids[self._joined : self._joined + self._JOIN_CHUNK]
            self._joined += len(chunk)
            self._entries.extend(members.join_many(self, chunk, first=False))
        self._ids = None
        self._joined = 0
        self._joiner = None
        members.joined_all(self)

    def __aiter__(self) -> AsyncIterator[ExportOutcome]:
        if self._entered:
            return self
        return _Cursor(self)

    async def __anext__(self) -> ExportOutcome:
        self._start()
        while not (self._ready or self._runs):
            if self._error is not None:
                raise self._error
            if self._remaining <= 0 or self.closed:
                raise StopAsyncIteration
            self._signal = asyncio.get_running_loop().create_future()
            try:
                await self._signal
            finally:
                self._signal = None
        return self._next_ready()

    def _next_ready(self) -> ExportOutcome:
        members = self._members
        ready = self._ready
        if ready:
            item = ready.popleft()
            return item if isinstance(item, ExportOutcome) else members.materialize(item, self)
        run = self._runs[0]
        entries = run.entries
        entry = entries.pop()
        if not entries:
            self._runs.popleft()
        return members.timed_out(entry, self, run.at)

    async def __aenter__(self) -> OutcomeStream:
        self._entered = True
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def release(self) -> None:
        """Stop polling for this stream now (``aclose`` also waits for the cancelled
        requests to end)."""
        if self._left is not None or not self._started_flag:
            self._left = self._left if self._left is not None else []
            return
        self._left = [entry for entry in self._entries if entry.has_caller(self)]
        self._tasks = self._members.leave(self)
        if self._joiner is not None:
            self._joiner.cancel()
            self._tasks.append(self._joiner)

    async def aclose(self) -> None:
        """Stop polling, and wait until the requests it cancelled have ended."""
        self.release()
        tasks, self._tasks = self._tasks, []
        await self._members.settle(tasks)

    def unfinished(self) -> list[ExportOutcome]:
        """``iter_unfinished()`` as a list: each export not yet yielded, with its outcome
        if known, else ``pending`` and the last status seen (as polling stopped, or now)."""
        return list(self.iter_unfinished())

    def iter_unfinished(self) -> Iterator[ExportOutcome]:
        """Every export not yet yielded, one outcome at a time: its outcome if it is
        known but not yet read, else a ``pending`` one with the last status seen (each
        unpacked only when its turn comes, so 100,000 never sit in memory at once)."""
        members = self._members
        now = members.clock.now()
        if not self._started_flag and self._ids:
            yield from (
                ExportOutcome(export_id, OutcomeKind.PENDING, None, None, 0, 0.0)
                for export_id in self._ids
            )
            return
        while self._ready or self._runs:
            yield self._next_ready()
        if self._left is not None:
            entries: Iterable[Entry] = self._left
        else:
            entries = [entry for entry in self._entries if entry.has_caller(self)]
        for entry in entries:
            yield members.snapshot(entry, self, now)
        if self._ids is not None:  # ids not joined yet: never polled
            for export_id in self._ids[self._joined :]:
                yield ExportOutcome(
                    export_id, OutcomeKind.PENDING, None, None, 0, now - self.started
                )


class _Cursor:
    """What a plain ``async for`` iterates. The loop is left one of three ways, and each
    stops polling at once: ``__anext__`` raised (a cancellation or an error: released
    here, since the traceback may keep the cursor alive), the stream ended, or the loop
    broke and dropped the cursor (its finalizer, registered here, releases the stream)."""

    __slots__ = ("__weakref__", "_stream")

    def __init__(self, stream: OutcomeStream) -> None:
        self._stream = stream
        finalizer = weakref.finalize(self, _release_dropped, stream)
        finalizer.atexit = False  # at exit the loop is gone: nothing polls any more

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> ExportOutcome:
        stream = self._stream
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException:
            _release_dropped(stream)
            raise


def _release_dropped(stream: OutcomeStream) -> None:
    """A plain ``async for`` over ``stream`` was left: stop polling for it."""
    if stream._started_flag and stream._left is None and not stream._entered:
        with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
            stream.release()
