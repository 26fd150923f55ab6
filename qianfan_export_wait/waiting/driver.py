"""The asyncio driver of a ``Scheduler``: one dispatcher task and one task per poll in
flight, all owned here. None outlives ``aclose()``, and none fails unseen: an exception
that is not an API error ends the exports it touched as ``error`` (see ``UnexpectedError``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Context
from math import inf
from typing import TYPE_CHECKING

from ..errors import (
    ApiError,
    AuthError,
    ClientClosedError,
    DownloadError,
    ThrottledError,
    TlsError,
    TransientError,
    UnexpectedError,
)
from ..models import ExportId, ExportStatus

if TYPE_CHECKING:
    from ..download import Downloader
from ..ratelimit import AsyncRateLimiter, RateLimiter
from .clock import Clock, MonotonicClock
from .core import Entry, Scheduler
from .policy import RetryAfterBound

__all__ = ["Driver"]

logger = logging.getLogger("qianfan_export_wait")

_STREAK_YIELD = 16
"""A worker taking polls itself yields to the loop every this many, in case its client
answers without ever suspending."""

Fetch = Callable[[ExportId], Awaitable[ExportStatus]]


class _Worker:
    """A worker task and the poll it holds (``entry`` and its limiter ``ticket``), from
    the moment the poll is handed to it until its answer is handled.

    The poll is the worker's to clean up, wherever a cancellation lands: in the request,
    or before the worker ran at all (handed out in the loop iteration its caller left).
    """

    __slots__ = ("entry", "task", "ticket")

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.ticket = 0
        self.task: asyncio.Task[None] = None  # type: ignore[assignment]  # set at start


class _RateMeter:
    """Requests sent per second lately, from a count sampled at most once a second."""

    __slots__ = ("_samples", "next_sample")

    _WINDOW = 5.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=8)
        self.next_sample = -inf

    def sample(self, now: float, total: int) -> None:
        """Note that ``total`` requests had been sent by ``now``."""
        self._samples.append((now, total))
        self.next_sample = now + 1.0

    def rate(self, now: float, total: int) -> float:
        """Requests per second over about the last five seconds."""
        samples = self._samples
        for when, count in samples:
            if now - when <= self._WINDOW + 1.0:
                span = now - when
                return (total - count) / span if span > 0.5 else 0.0
        return 0.0


class Driver:
    """Runs ``core`` on the event loop: sends polls through ``fetch`` within ``limiter`` and
    ``max_in_flight``, and sleeps on ``clock`` until the core has something to do."""

    def __init__(
        self,
        core: Scheduler,
        *,
        fetch: Fetch,
        limiter: RateLimiter | AsyncRateLimiter,
        clock: Clock,
        max_in_flight: int,
        describe_client: Callable[[], str],
        downloader: Downloader | None = None,
    ) -> None:
        self.core = core
        self.max_in_flight = max_in_flight
        # Every poll handed out and not yet handled, by its worker: max_in_flight counts them.
        self.polls: dict[Entry, _Worker] = {}
        # Workers run the polls, each handed the next one when it is done with its last.
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: list[tuple[asyncio.Future[bool], _Worker]] = []
        self.downloads: dict[Entry, asyncio.Task[None]] = {}
        self._downloader = downloader
        core.downloads = downloader is not None
        self._fetch = fetch
        self._limiter = limiter
        self._areserve = getattr(limiter, "areserve", None)
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
        self._closed = False
        self._meter = _RateMeter()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by kick
        self._logged_unexpected: set[type] = set()
        self._retry_after = RetryAfterBound(core.policy)
        # Told of every request's answer (observe.Instruments.poll), or None: nobody asks.
        self.observe: (
            Callable[[ExportId, ExportStatus | None, Exception | None, float], None] | None
        ) = None

    # -- control -----------------------------------------------------------------------

    def kick(self) -> None:
        """Make the dispatcher run if there is work, and look again if it should."""
        if self._closed:
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
                self._dispatcher = loop.create_task(self._dispatch(), context=Context())
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
        self._closed = True
        tasks = [*self._workers, *self.downloads.values()]
        if self._dispatcher is not None and not self._dispatcher.done():
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        self.core.abort_all(error)
        if tasks:
            await asyncio.wait(tasks)

    # -- the dispatcher ------------------------------------------------------------------

    async def _dispatch(self) -> None:
        core = self.core
        clock = self._clock
        slack = self._slack
        polls = self.polls
        areserve = self._areserve
        reserve = getattr(self._limiter, "reserve", None)
        start_poll = self._start_poll
        try:
            while not self._closed:
                now = clock.now()
                # Last looks are planned at the rate the limiter allows now.
                core.looks.set_rate(self._limiter.rate)
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
                            if areserve is not None:
                                reservation = await areserve(now)
                            else:
                                reservation = reserve(now)  # type: ignore[misc]
                            held = self._held = (now + reservation.delay, reservation.ticket)
                        if held[0] > now:
                            break
                        entry = core.take(now)
                        if entry is None:
                            break
                        self._held = None
                        start_poll(entry, held[1], now)
                        if len(polls) >= limit or self._closed:
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
        worker = _Worker()
        self._hold(worker, entry, ticket)
        task = worker.task = self._loop.create_task(self._work(worker))
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        task.add_done_callback(lambda _: self._worker_ended(worker))

    def _hold(self, worker: _Worker, entry: Entry, ticket: int) -> None:
        """``worker`` holds the poll of ``entry``: in flight from now, not from when the
        worker runs (max_in_flight counts it)."""
        worker.entry = entry
        worker.ticket = ticket
        self.polls[entry] = worker

    def _let_go(self, worker: _Worker) -> None:
        """``worker`` is done with its poll (answered, failed or cancelled)."""
        entry = worker.entry
        if entry is not None:
            worker.entry = None
            if self.polls.get(entry) is worker:
                del self.polls[entry]

    def _worker_ended(self, worker: _Worker) -> None:
        """A worker's task ended: a poll it still held was cancelled before its answer
        was handled (perhaps before the worker ever ran); give its slot back."""
        entry = worker.entry
        if entry is None:
            return
        self._let_go(worker)
        self.core.on_cancelled(entry)
        self.kick()

    async def _work(self, worker: _Worker) -> None:
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
            observe = self.observe
            sent = self._clock.now() if observe is not None else 0.0
            try:
                status = await fetch(entry.export_id)
            except asyncio.CancelledError:
                self._worker_ended(worker)
                raise
            except Exception as error:
                self._on_failure(entry, ticket, error)
                if observe is not None:
                    observe(entry.export_id, None, error, self._clock.now() - sent)
            else:
                self._on_status(entry, ticket, status)
                if observe is not None:
                    observe(entry.export_id, status, None, self._clock.now() - sent)
            self._let_go(worker)
            if self._closed or not self.core.entries:
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

    def _next_poll(self, now: float, worker: _Worker) -> bool:
        """Hand ``worker``, just done with its poll, the next one if it may go now by the
        dispatcher's rules (room in flight, the sweep's pace, a rate-limiter slot, an
        export due); ``False`` leaves it to the dispatcher."""
        # A limiter that books without awaiting lets a worker take its next poll itself
        # (read from the limiter each time: it may be replaced while the waiter runs).
        reserve = None if self._areserve is not None else getattr(self._limiter, "reserve", None)
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

    def _on_status(self, entry: Entry, ticket: int, status: ExportStatus) -> None:
        core = self.core
        now = self._clock.now()
        try:
            self._limiter.on_success(now, ticket)
            if core.on_status(entry, status, now):
                self._start_download(entry, status)
        except Exception as error:  # a wait strategy or the limiter raised on the answer
            self._unexpected(entry, error)

    def _on_failure(self, entry: Entry, ticket: int, error: Exception) -> None:
        core = self.core
        now = self._clock.now()
        try:
            if isinstance(error, ThrottledError):
                pause = self._retry_after.pause(error.retry_after, now, self._looks_due())
                self._limiter.on_throttle(now, ticket, pause)
                core.on_throttled(entry, error, now)
            elif isinstance(error, TransientError):
                core.on_transient(entry, error, now)
            elif isinstance(error, AuthError):
                self._on_auth_error(entry, error)
            elif isinstance(error, ApiError):
                core.on_rejected(entry, error, now)
            elif isinstance(error, ClientClosedError):  # every poll would fail alike
                self._log_unexpected(error, entry)
                core.end_all(error, now)
            else:  # a closed session, a bug in a custom client
                self._unexpected(entry, error)
        except Exception as bug:  # a strategy or the limiter raised on the error
            self._unexpected(entry, bug)

    def _unexpected(self, entry: Entry, error: Exception) -> None:
        self._log_unexpected(error, entry)
        try:
            self.core.on_unexpected(entry, error, self._clock.now())
        except Exception as bug:  # pragma: no cover - a bug in the core itself
            self._crash(bug, "handling an answer")

    # -- downloads -------------------------------------------------------------------------

    def _start_download(self, entry: Entry, status: ExportStatus) -> None:
        task = self.downloads[entry] = self._loop.create_task(self._download(entry, status))
        task.add_done_callback(lambda _: self._download_ended(entry, task))

    def _download_ended(self, entry: Entry, task: asyncio.Task[None]) -> None:
        """A download's task ended, however (cancelled before it ran, too): forget it."""
        if self.downloads.get(entry) is task:
            del self.downloads[entry]
        if task.cancelled():
            entry.in_flight = False
        self.kick()

    async def _download(self, entry: Entry, status: ExportStatus) -> None:
        core = self.core
        clock = self._clock
        downloader = self._downloader
        assert downloader is not None
        try:
            try:
                record = await downloader.download(status, refresh=self.fetch_now)
            except DownloadError as error:
                logger.warning(
                    "export %r is Done, but its file was not fetched: %s", entry.export_id, error
                )
                core.on_downloaded(entry, clock.now(), error=error)
            else:
                core.on_downloaded(entry, clock.now(), file=record)
        except Exception as error:  # a bug in the downloader: the export is Done anyway
            self._log_unexpected(error, entry)
            failed = DownloadError(
                f"{type(error).__name__} while downloading: {error}", export_id=entry.export_id
            )
            core.on_downloaded(entry, clock.now(), error=failed)

    async def fetch_now(self, export_id: ExportId) -> ExportStatus:
        """One status request outside the schedule (a fresh download link), within the
        rate limit; its errors are raised."""
        clock = self._clock
        now = clock.now()
        if self._areserve is not None:
            reservation = await self._areserve(now)
        else:
            reservation = self._limiter.reserve(now)  # type: ignore[union-attr]
        if reservation.delay > 0:
            await clock.sleep(reservation.delay)
        self.core.requests += 1
        sent = clock.now()
        try:
            status = await self._fetch(export_id)
        except Exception as error:
            if self.observe is not None:
                self.observe(export_id, None, error, clock.now() - sent)
            if isinstance(error, ThrottledError):
                now = clock.now()
                pause = self._retry_after.pause(error.retry_after, now, self._looks_due())
                self._limiter.on_throttle(now, reservation.ticket, pause)
            raise
        if self.observe is not None:
            self.observe(export_id, status, None, clock.now() - sent)
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

    def _looks_due(self) -> float:
        """When callers' last looks must begin to go: a pause must end by then."""
        core = self.core
        deadline = core.next_deadline()
        looks = core.looks.start() if core.looks.total else inf
        return looks if looks < deadline else deadline

    def _on_auth_error(self, entry: Entry, error: AuthError) -> None:
        if self.core.auth_refusal(self._clock.now()) is None:  # not within a cool-down
            logger.error(
                "%s failed for %s: %s; stopping all polling",
                "TLS" if isinstance(error, TlsError) else "authentication",
                self._describe_client(),
                error,
            )
        self.core.on_auth_error(entry, error, self._clock.now())
        for other, worker in list(self.polls.items()):
            if other is not entry:
                worker.task.cancel()

    def _crash(self, error: BaseException, during: str) -> None:
        logger.error(
            "%s while %s; every export ends as error", type(error).__name__, during, exc_info=error
        )
        self.core.end_all(UnexpectedError(error, during), self._clock.now())
        for worker in list(self.polls.values()):
            worker.task.cancel()
