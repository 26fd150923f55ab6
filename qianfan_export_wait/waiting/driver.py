"""The asyncio driver of a ``Scheduler``: one dispatcher task and one task per poll in
flight, all owned here. None outlives ``aclose()``, and none fails unseen: an exception
that is not an API error ends the exports it touched as ``error`` (see ``UnexpectedError``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Context
from math import inf

from ..errors import ThrottledError, TlsError, UnexpectedError
from ..models import ExportId, ExportStatus
from ..ratelimit import AsyncRateLimiter, RateLimiter
from .answers import CANCELLED
from .clock import Clock, MonotonicClock
from .core import NOTHING, Action, Entry, Scheduler
from .downloading import DownloadTasks, FileFetcher
from .limiting import DriverLimiter
from .polls import RateMeter, Worker
from .tasks import TaskOwner

__all__ = ["Driver"]

logger = logging.getLogger("qianfan_export_wait")

_STREAK_YIELD = 16
"""A worker taking polls itself yields to the loop every this many, in case its client
answers without ever suspending."""

Fetch = Callable[[ExportId], Awaitable[ExportStatus]]


class Driver:
    """Runs ``core`` on the event loop: reserves a rate-limiter slot, ``take``s the next
    poll, sends it through ``fetch`` (within ``max_in_flight``) and reports the result
    with ``answer``, doing what the reply says; sleeps on ``clock`` until the core has
    something to do. It writes nothing of the core's own."""

    def __init__(
        self,
        core: Scheduler,
        *,
        fetch: Fetch,
        limiter: RateLimiter | AsyncRateLimiter,
        clock: Clock,
        max_in_flight: int,
        describe_client: Callable[[], str],
        downloader: FileFetcher | None = None,
    ) -> None:
        self.core = core
        self.max_in_flight = max_in_flight
        # Every poll handed out and not yet handled, by its worker: max_in_flight counts them.
        self.polls: dict[Entry, Worker] = {}
        # Workers run the polls, each handed the next one when it is done with its last.
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: list[tuple[asyncio.Future[bool], Worker]] = []
        self._downloads = (
            None
            if downloader is None
            else DownloadTasks(
                core,
                downloader,
                clock=clock,
                refresh=self.fetch_now,
                log_unexpected=self._log_unexpected,
                ended=self.kick,
            )
        )
        self._fetch = fetch
        self._limiter = DriverLimiter(limiter)
        self._clock = clock
        self._real_clock = isinstance(clock, MonotonicClock)
        self._slack = core.resolution
        self._describe_client = describe_client
        self._dispatcher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        # While the dispatcher sleeps: when it wakes by itself, and whether a poll falling
        # due sooner (else only a sooner deadline, or a freed slot) should wake it.
        self._wake_at = -inf
        self._wake_on_ready = False
        self._wake_on_slot = False
        self._held: tuple[float, int] | None = None
        # With a poll budget: the next turn of the round-robin sweep.
        self._paced_at = -inf
        # Every task of the driver (dispatcher, workers, downloads) starts through it.
        self._tasks = TaskOwner()
        self._meter = RateMeter()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by kick
        self._logged_unexpected: set[type] = set()

    # -- control -----------------------------------------------------------------------

    def kick(self) -> None:
        """Make the dispatcher run if there is work, and look again if it should."""
        if not self._tasks.open:
            return
        core = self.core
        dispatcher = self._dispatcher
        if dispatcher is None or dispatcher.done():
            if core.entries:
                loop = self._loop = asyncio.get_running_loop()
                if self._wakeup is None:
                    self._wakeup = asyncio.Event()
                # A context of its own: polls serve every caller, so no caller's span or
                # context variables may leak into the requests (docs/operations.md).
                self._dispatcher = Context().run(self._tasks.spawn, loop, self._dispatch())
                self._dispatcher.add_done_callback(self._dispatcher_done)
            return
        wake_at = self._wake_at
        if wake_at == -inf:
            return  # it is running, and will look at the new state anyway
        if not core.entries or (self._wake_on_slot and len(self.polls) < self.limit):
            wake = True
        else:
            soonest = core.next_event() if self._wake_on_ready else core.next_deadline()
            wake = soonest + self._slack < wake_at
        if wake:
            assert self._wakeup is not None
            self._wakeup.set()

    def use_limiter(self, limiter: RateLimiter | AsyncRateLimiter) -> None:
        """Book slots with ``limiter`` from now on."""
        self._limiter = DriverLimiter(limiter)

    @property
    def downloads(self) -> dict[Entry, asyncio.Task[None]]:
        """The download tasks in flight, by entry."""
        return {} if self._downloads is None else self._downloads.tasks

    @property
    def limit(self) -> int:
        """Polls allowed in flight now: one until the credentials have been proven."""
        return self.max_in_flight if self.core.proven else 1

    def request_rate(self) -> float:
        """Requests sent per second lately."""
        return self._meter.rate(self._clock.now(), self.core.requests)

    def cancel_polls(self, entries: Iterable[Entry]) -> list[asyncio.Task[None]]:
        """Cancel the polls and downloads in flight for ``entries``; return their tasks."""
        tasks = []
        for entry in entries:
            worker = self.polls.get(entry)
            task = worker.task if worker is not None else self.downloads.get(entry)
            if task is not None:
                task.cancel()
                tasks.append(task)
        return tasks

    async def settle(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Wait for ``tasks`` to end, and for the dispatcher and workers too if no work
        is left."""
        waits = set(tasks)
        if not self.core.entries:
            dispatcher = self._dispatcher
            if dispatcher is not None and not dispatcher.done():
                self.kick()
                waits.add(dispatcher)
            self._release_workers()
            waits.update(self._workers)
        if waits:
            await asyncio.wait(waits)

    async def aclose(self, error: BaseException) -> None:
        """Stop for good: cancel every task, end every caller's wait with ``error``."""
        tasks = self._tasks.close()
        self.core.abort_all(error)
        await self._tasks.wait(tasks)

    # -- the dispatcher ------------------------------------------------------------------

    async def _dispatch(self) -> None:
        core = self.core
        clock = self._clock
        slack = self._slack
        polls = self.polls
        limiter = self._limiter
        reserve_now = limiter.reserve_now
        owner = self._tasks
        start_poll = self._start_poll
        try:
            while owner.open:
                now = clock.now()
                # Last looks are planned at the rate the limiter allows now.
                core.set_rate(limiter.rate)
                limit = self.max_in_flight if core.proven else 1
                room = len(polls) < limit
                ready = core.ready_at()
                if room and ready <= now and self._paced_at <= now:
                    # Send what may go now, one rate-limiter slot each.
                    while True:
                        if self._paced_at > now:
                            break
                        held = self._held
                        if held is None:
                            if reserve_now is not None:
                                reservation = reserve_now(now)
                            else:
                                reservation = await limiter.reserve(now)
                            held = self._held = (now + reservation.delay, reservation.ticket)
                        if held[0] > now:
                            break
                        entry = core.take(now)
                        if entry is None:
                            break
                        self._held = None
                        start_poll(entry, held[1], now)
                        if len(polls) >= limit or not owner.open:
                            break
                    room = len(polls) < limit
                    ready = core.ready_at()
                # Nothing more may go now. Deadlines are looked at only here, so an export
                # due at its deadline gets its last poll first (the Smithy rule).
                core.expire(now)
                if not core.entries:
                    self._release_workers()
                    return
                # An expired caller moves its exports' nearest deadlines, and with them
                # the last looks owed: what is ready when is read again.
                ready = core.ready_at()
                deadline = core.next_deadline() + slack
                if not room:
                    await self._sleep(deadline, on_slot=True)
                elif ready > now:
                    await self._sleep(ready if ready < deadline else deadline, on_ready=True)
                elif self._paced_at > now:
                    paced_at = self._paced_at
                    await self._sleep(paced_at if paced_at < deadline else deadline)
                else:
                    slot = self._held[0] if self._held is not None else now
                    await self._sleep(slot if slot < deadline else deadline)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a limiter or a bug: never a hang, never unseen
            self._crash(error, "dispatching polls")
        finally:
            self._held = None

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            logger.error("the dispatcher failed", exc_info=task.exception())

    async def _sleep(
        self, wake_at: float, *, on_ready: bool = False, on_slot: bool = False
    ) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        wakeup.clear()
        self._wake_at = wake_at
        self._wake_on_ready = on_ready
        self._wake_on_slot = on_slot
        try:
            if wake_at == inf:
                await wakeup.wait()
            elif self._real_clock:
                delay = wake_at - self._clock.now()
                if delay > 0:
                    # Not asyncio.wait_for: before Python 3.12 it can swallow a
                    # cancellation that lands as the wait ends.
                    timer = asyncio.get_running_loop().call_later(delay, wakeup.set)
                    try:
                        await wakeup.wait()
                    finally:
                        timer.cancel()
            else:
                # A virtual clock jumps at once, and a request takes no virtual time: let
                # the polls in flight answer first (one may bring an earlier due time),
                # and while they fill every slot, wait for them, not for the clock.
                for _ in range(3):
                    await asyncio.sleep(0)
                if self._wake_on_slot and not wakeup.is_set():
                    await wakeup.wait()
                elif not wakeup.is_set():
                    await self._clock.sleep(wake_at - self._clock.now())
        finally:
            self._wake_at = -inf

    # -- polls -----------------------------------------------------------------------------

    def _sent(self, now: float) -> None:
        """The bookkeeping of a poll handed out at ``now``, by the dispatcher or a worker:
        the rate meter's sample, and with a budget the sweep's next turn (one every
        1/budget s, catching up on at most one turn missed by a late wake-up)."""
        meter = self._meter
        if now >= meter.next_sample:
            meter.sample(now, self.core.requests)
        budget = self.core.policy.budget
        if budget:
            pace = 1.0 / budget
            paced_at = self._paced_at
            self._paced_at = (paced_at if paced_at > now - pace else now) + pace

    def _start_poll(self, entry: Entry, ticket: int, now: float) -> None:
        self._sent(now)
        idle = self._idle
        while idle:
            # A worker that finished its last poll takes this one: no task per poll.
            turn, worker = idle.pop()
            if not turn.done():  # (a worker cancelled while idle has gone)
                self._hold(worker, entry, ticket)
                turn.set_result(True)
                return
        worker = Worker()
        self._hold(worker, entry, ticket)
        task = worker.task = self._tasks.spawn(self._loop, self._work(worker))
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        task.add_done_callback(lambda _: self._worker_ended(worker))

    def _hold(self, worker: Worker, entry: Entry, ticket: int) -> None:
        """``worker`` holds the poll of ``entry``: in flight from now, not from when the
        worker runs (max_in_flight counts it)."""
        worker.entry = entry
        worker.ticket = ticket
        self.polls[entry] = worker

    def _let_go(self, worker: Worker) -> None:
        """``worker`` is done with its poll (answered, failed or cancelled)."""
        entry = worker.entry
        if entry is not None:
            worker.entry = None
            if self.polls.get(entry) is worker:
                del self.polls[entry]

    def _worker_ended(self, worker: Worker) -> None:
        """A worker's task ended: a poll it still held was cancelled before its answer
        was handled (perhaps before the worker ever ran); give its slot back."""
        entry = worker.entry
        if entry is None:
            return
        self._let_go(worker)
        self.core.answer(entry, CANCELLED, self._clock.now())
        self.kick()

    async def _work(self, worker: Worker) -> None:
        """A worker: polls one export, then waits to be handed the next. It handles every
        exception of a poll itself, so none fails unseen; a cancelled poll ends it (and
        ``_worker_ended`` cleans up after it)."""
        fetch = self._fetch
        loop = self._loop
        idle = self._idle
        streak = 0
        while True:
            entry = worker.entry
            assert entry is not None
            ticket = worker.ticket
            result: ExportStatus | Exception
            try:
                result = await fetch(entry.export_id)
            except asyncio.CancelledError:
                self._worker_ended(worker)
                raise
            except Exception as error:
                result = error
            self._report(entry, ticket, result)
            self._let_go(worker)
            if not self._tasks.open or not self.core.entries:
                self.kick()
                return
            took = self._next_poll(self._clock.now(), worker)
            self.kick()
            if not took:
                turn: asyncio.Future[bool] = loop.create_future()
                idle.append((turn, worker))
                if not await turn:
                    return
                streak = 0
            else:
                # Taken without the dispatcher: no future, no hand-over. A client that
                # answers without suspending must not keep the loop to itself, though.
                streak += 1
                if streak % _STREAK_YIELD == 0:
                    await asyncio.sleep(0)

    def _next_poll(self, now: float, worker: Worker) -> bool:
        """Hand ``worker``, just done with its poll, the next one if it may go now by the
        dispatcher's rules (room in flight, the sweep's pace, a rate-limiter slot, an
        export due); ``False`` leaves it to the dispatcher."""
        # A limiter that books without awaiting lets a worker take its next poll itself
        # (read from the limiter each time: it may be replaced while the waiter runs).
        reserve = self._limiter.reserve_now
        core = self.core
        if (
            reserve is None
            or self._paced_at > now
            or len(self.polls) >= (self.max_in_flight if core.proven else 1)
            or core.ready_at() > now
        ):
            return False
        held = self._held
        if held is None:
            reservation = reserve(now)
            held = self._held = (now + reservation.delay, reservation.ticket)
        if held[0] > now:
            return False
        entry = core.take(now)
        if entry is None:
            return False
        self._held = None
        self._sent(now)
        self._hold(worker, entry, held[1])
        return True

    def _release_workers(self) -> None:
        """Let the idle workers end (no work is left)."""
        idle, self._idle = self._idle, []
        for turn, _ in idle:
            if not turn.done():
                turn.set_result(False)

    def _report(self, entry: Entry, ticket: int, result: ExportStatus | Exception) -> None:
        """Report a poll's result to the core, and do what its reply says."""
        core = self.core
        now = self._clock.now()
        try:
            if isinstance(result, ExportStatus):
                self._limiter.on_success(now, ticket)
            reply = core.answer(entry, result, now)
            if reply is NOTHING:
                return
            action = reply.action
            if action is Action.DOWNLOAD:
                assert self._downloads is not None and isinstance(result, ExportStatus)
                self._downloads.start(self._tasks.spawn, self._loop, entry, result)
            elif action is Action.THROTTLED:
                self._limiter.on_throttle(now, ticket, reply.pause)
            elif action is Action.AUTH_FAILED:
                if reply.first:
                    logger.error(
                        "%s failed for %s: %s; stopping all polling",
                        "TLS" if isinstance(result, TlsError) else "authentication",
                        self._describe_client(),
                        result,
                    )
                for other, worker in list(self.polls.items()):
                    if other is not entry:
                        worker.task.cancel()
            elif isinstance(reply.error, Exception):
                self._log_unexpected(reply.error, entry)
        except Exception as error:  # a wait strategy or the limiter raised on the answer
            self._unexpected(entry, error)

    def _unexpected(self, entry: Entry, error: Exception) -> None:
        self._log_unexpected(error, entry)
        try:
            self.core.fail(entry, error, self._clock.now())
        except Exception as bug:  # pragma: no cover - a bug in the core itself
            self._crash(bug, "handling an answer")

    async def fetch_now(self, export_id: ExportId) -> ExportStatus:
        """One status request outside the schedule (a fresh download link), within the
        rate limit; its errors are raised."""
        clock = self._clock
        now = clock.now()
        reservation = await self._limiter.reserve(now)
        if reservation.delay > 0:
            await clock.sleep(reservation.delay)
        self.core.count_request()
        try:
            status = await self._fetch(export_id)
        except ThrottledError as error:
            now = clock.now()
            pause = self.core.pause_for(error.retry_after, now)
            self._limiter.on_throttle(now, reservation.ticket, pause)
            raise
        self._limiter.on_success(clock.now(), reservation.ticket)
        return status

    def _log_unexpected(self, error: Exception, entry: Entry) -> None:
        # Once per kind with the traceback: a closed client fails every poll alike.
        if type(error) not in self._logged_unexpected:
            self._logged_unexpected.add(type(error))
            logger.error(
                "export %r ends as error: %s while polling it",
                entry.export_id,
                type(error).__name__,
                exc_info=error,
            )
        else:
            logger.debug("export %r ends as error: %r", entry.export_id, error)

    def _crash(self, error: BaseException, during: str) -> None:
        logger.error(
            "%s while %s; every export ends as error", type(error).__name__, during, exc_info=error
        )
        self.core.end_all(UnexpectedError(error, during), self._clock.now())
        for worker in list(self.polls.values()):
            worker.task.cancel()
