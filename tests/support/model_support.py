"""The world of tests/properties/test_waiter_model.py: an event loop whose time is virtual,
a clock on it, and the fake status client (``fakes.ScriptedClient``) configured to answer
from each export's timeline (``FakeApi``); the downloader is ``fakes.FakeDownloader``.

``VirtualLoop`` is a discrete-event loop: its ``time()`` is a number the test moves, so every
timer (``asyncio.sleep``, ``call_later``) fires at its exact virtual time. The test lets the
loop run until every task is blocked (``drain``), then jumps to the next timer (``tick``), or
stops after a chosen number of loop iterations to act in between (``spin``). The waiter is
given ``LoopClock``, a ``MonotonicClock`` reading the loop's time, so the driver takes the
same path it takes in production (timers on the loop, woken early by a new caller).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from fakes import Request, ScriptedClient
from statuses import make_status

from qianfan_export_wait.errors import ThrottledError, TransientError
from qianfan_export_wait.models import ExportStatus
from qianfan_export_wait.waiting import MonotonicClock

TERMINAL = ("Done", "Fail")


class VirtualLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """An event loop on virtual time: ``time()`` moves only when the test moves it."""

    def __init__(self) -> None:
        super().__init__()
        self.virtual_now = 0.0
        self.iterations = 0

    def time(self) -> float:
        return self.virtual_now

    def _run_once(self) -> None:
        self.iterations += 1
        # A real loop fires a timer up to its clock resolution early, and by then real
        # time has moved on; here time moves to the timer, or a timer set a hair ahead
        # of now would fire again and again at the same instant.
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if scheduled and not scheduled[0]._cancelled:
            when = scheduled[0]._when
            if self.virtual_now < when <= self.virtual_now + self._clock_resolution:  # type: ignore[attr-defined]
                self.virtual_now = when
        super()._run_once()  # type: ignore[misc]

    def busy(self) -> bool:
        """Whether any callback is ready to run (besides the one running now)."""
        return bool(self._ready)  # type: ignore[attr-defined]

    def next_timer(self) -> float:
        """When the earliest live timer fires (``inf`` if none)."""
        live = [h._when for h in self._scheduled if not h._cancelled]  # type: ignore[attr-defined]
        return min(live, default=math.inf)


class BusyLoopError(AssertionError):
    """The waiter read the clock thousands of times in one loop iteration: it spins
    without ever yielding (on a real clock, the loop would be wedged)."""


class LoopClock(MonotonicClock):
    """The waiter's clock: the virtual loop's time (``asyncio.sleep`` is already virtual).

    It notices a task that reads the time again and again without yielding to the loop
    (a busy spin: virtual time cannot move then, real time would not help the loop
    either) and raises ``BusyLoopError`` from inside it, noting it in ``spins``."""

    SPIN_LIMIT = 10_000

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._iteration = -1
        self._reads = 0
        self.spins: list[str] = []

    def now(self) -> float:
        loop = self._loop
        if loop.iterations != self._iteration:
            self._iteration = loop.iterations
            self._reads = 0
        self._reads += 1
        if self._reads > self.SPIN_LIMIT:
            task = asyncio.current_task(loop)
            message = (
                f"P4: {task.get_coro() if task else '?'} read the clock {self._reads} times "
                f"in one loop iteration at t={loop.virtual_now:g}: it spins without yielding"
            )
            self.spins.append(message)
            self._reads = 0
            raise BusyLoopError(message)
        return loop.virtual_now


async def drain(loop: VirtualLoop, limit: int = 100_000) -> int:
    """Run the loop until every task is blocked (on a timer or a future); return the
    iterations it took. Called from a task on ``loop``."""
    for count in range(limit):
        await asyncio.sleep(0)
        if not loop.busy():
            return count
    ready = list(loop._ready)[:5]  # type: ignore[attr-defined]
    raise AssertionError(
        f"P4: the loop never went quiet in {limit} iterations at t={loop.virtual_now:g}: "
        f"a task spins (yielding each time); ready: {ready}"
    )


async def run_until(loop: VirtualLoop, target: float) -> None:
    """Drain, then fire timers in time order (draining after each time step) up to
    ``target``; the loop's time ends at ``target``."""
    await drain(loop)
    while True:
        when = loop.next_timer()
        if when > target:
            break
        loop.virtual_now = max(loop.virtual_now, when)
        await drain(loop)
    loop.virtual_now = max(loop.virtual_now, target)
    await drain(loop)


# -- the fake API ---------------------------------------------------------------------------


@dataclass
class Timeline:
    """An export's true state over virtual time: ``changes`` as (from time, state), sorted."""

    changes: list[tuple[float, str]]

    def state_at(self, when: float) -> str:
        state = "Pending"
        for start, name in self.changes:
            if start <= when:
                state = name
        return state


class FakeApi(ScriptedClient):
    """The fake status client configured for the model: answers each export from its
    ``Timeline`` (the state when the request arrives), with faults queued per export
    (throttles, transient errors), outages (every request fails) and slow answers (an
    answer held for some virtual seconds); notes in-flight overruns, polls nobody wanted
    and when the in-flight budget was full."""

    RETRY_AFTER = 1.0

    def __init__(self, loop: VirtualLoop, timelines: dict[int, Timeline], max_in_flight: int):
        super().__init__(self)  # its own clock: now() reads the loop's time
        self.loop = loop
        self.timelines = timelines
        self.max_in_flight = max_in_flight
        self.faults: dict[int, list[str]] = {}
        self.holds: dict[int, list[float]] = {}
        self.outage_until = -math.inf
        self.outages: list[tuple[float, float]] = []
        # Violations seen while a request came in (checked by the model's invariants).
        self.violations: list[str] = []
        # Exports that nobody wanted at the last quiet moment (set by the model): a request
        # for one of them is a poll nobody asked for.
        self.unwanted: set[int] = set()
        # When in-flight was at max_in_flight: (from, to) spans.
        self.saturated: list[list[float]] = []
        # The waiter's current limiter rate (set by the model), logged with each request.
        self.rate_now: Callable[[], float] | None = None

    def now(self) -> float:
        return self.loop.virtual_now

    def in_flight_for(self, export_id: int) -> int:
        return sum(1 for r in self.requests if r.export_id == export_id and r.ended == math.inf)

    def start_outage(self, seconds: float) -> None:
        now = self.loop.virtual_now
        self.outage_until = max(self.outage_until, now + seconds)
        self.outages.append((now, now + seconds))

    def arrived(self, request: Request) -> None:
        now = request.sent
        if self.rate_now is not None:
            request.rate = self.rate_now()
        if self.in_flight > self.max_in_flight:
            self.violations.append(
                f"P4: {self.in_flight} requests in flight at t={now:g} "
                f"(max_in_flight={self.max_in_flight})"
            )
        if self.in_flight == self.max_in_flight:
            self.saturated.append([now, math.inf])
        if request.export_id in self.unwanted:
            self.violations.append(
                f"P4: export {request.export_id} polled at t={now:g} though no caller wanted it"
            )

    def leaving(self, request: Request) -> None:
        if self.in_flight == self.max_in_flight and self.saturated:
            self.saturated[-1][1] = self.loop.virtual_now

    async def answer(self, request: Request) -> ExportStatus:
        export_id = request.export_id
        holds = self.holds.get(export_id)
        hold = holds.pop(0) if holds else 0.0
        faults = self.faults.get(export_id)
        fault = faults.pop(0) if faults else None
        if request.sent < self.outage_until:
            fault = "outage"
        if hold > 0:
            await asyncio.sleep(hold)
        request.ended = self.loop.virtual_now
        if fault is not None:
            request.fault = fault
            if fault == "throttle":
                raise ThrottledError("HTTP 429 QPS limit", http_status=429)
            if fault == "throttle-retry-after":
                request.retry_after = self.RETRY_AFTER
                raise ThrottledError(
                    "HTTP 429 QPS limit", http_status=429, retry_after=self.RETRY_AFTER
                )
            raise TransientError("HTTP 502 bad gateway", http_status=502)
        state = self.timelines[export_id].state_at(request.sent)
        request.state = state
        request.status = make_status(export_id, state)
        return request.status

    def saturated_during(self, start: float, end: float) -> bool:
        return any(a <= end and b >= start for a, b in self.saturated)

    def faults_during(self, start: float, end: float) -> bool:
        """Whether any request failed (or was held back by a Retry-After, or an outage ran)
        in ``[start, end]``: then the rate limit could not carry every poll."""
        for r in self.requests:
            if r.fault is None:
                continue
            hold_end = r.ended + (r.retry_after or 0.0)
            if r.sent <= end and hold_end >= start:
                return True
        return any(a <= end and b >= start for a, b in self.outages)
