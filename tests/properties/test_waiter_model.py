"""A model of callers that checks every promise of ``ExportWaiter`` after every step.

A hypothesis ``RuleBasedStateMachine`` drives one waiter on a virtual event loop
(tests/support/model_support.py: timers fire at exact virtual times; the test runs the loop until
every task is blocked, jumps to the next timer, or stops after a chosen number of loop
iterations to act in between) against a fake API that logs every request. Callers arrive
at any step (``wait``, ``submit``, ``wait_all``, ``as_completed``, each with a ``timeout``)
and leave at any step (cancel the task or handle, ``break``, ``release()``, ``aclose()``),
including in the loop iteration between a poll's hand-out and its worker's first run. The
API answers each export from a timeline of states (``Pending`` .. ``Done``/``Fail``, or
never terminal), throttles (with and without ``Retry-After``), fails transiently, goes
down (an outage), and holds answers (slow answers while others proceed); a downloader may
fetch Done exports' files.

The promises (issue 16), one check function each (``check_p*``):

P1  every caller gets exactly one outcome per export it asked for: none twice, none lost,
    none after it left, no exception it did not ask for, nothing unseen on the loop.
P2  ``timeout`` means no terminal answer for that export arrived before that caller's
    deadline, and a last look was sent within ``W = min_delay + batch window`` before the
    deadline (not checked where the API failed, held back by ``Retry-After``, every
    slot of the rate limit between the caller's start (or the window's) and its deadline
    was used, the
    in-flight budget was full in that window, or the adaptive limiter, slowed by throttles,
    allowed fewer than ``len(EXPORTS) / W`` requests a second: then the rate limit could
    not carry it, and the looks were planned earlier);
    the timeout is made at the deadline, carries the last status received, and its
    ``status_age`` is the time since that status was received.
    The load is kept within what the rate limit carries: at most ``QPS * min_delay / 2``
    distinct exports (5 at 10/s, ``min_delay`` 1 s).
P3  a caller that joins an export whose last answer is older than ``min_delay`` gets a
    poll of it within ``W`` (same exemptions as P2, every slot of the rate limit in
    ``W`` used among them).
P4  at most ``max_in_flight`` requests in flight at the API (one before the credentials
    are proven); when the loop is quiet: none in flight and none sent for an export no
    caller wants, the waiter's table of polls and downloads match the API's and the
    downloader's, its tasks are at most dispatcher + workers + downloads and none once no
    caller is left, and it keeps no entry for an export nobody wants.
P5  every entry point takes a deadline (``wait_all(ids, timeout=)`` and
    ``as_completed(ids, timeout=)`` as ``wait`` and ``submit``), and keeps it: every
    caller has every outcome by its deadline plus the longest answer hold and download.

Mutation proofs (``python tests/support/mutate_model.py``; each breaks one rule, the model must
fail): a timeout outcome never handed (P5/P1), last looks never planned, ``status_age``
always 0, the next caller's deadline owed only when the nearest caller goes (P2), a joiner
inheriting the backoff (P3), a cancelled worker's poll never freed (the wedge, P4), a task
cancelled inside a plain ``async for`` staying registered (P1/P4), ``wait_all`` ignoring
its timeout (P5): all eight caught with the model-ci profile.

Profiles: ``QEW_MODEL_PROFILE=model-ci`` (default: seeded, derandomized, no shrinking so a
failure costs seconds, ``QEW_MODEL_EXAMPLES`` examples, default 300) or ``model-nightly``
(random seeds, shrinking on, 5000 examples by default).
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import FakeDownloader, Request
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from model_support import (
    TERMINAL,
    FakeApi,
    LoopClock,
    Timeline,
    VirtualLoop,
    drain,
    run_until,
)

from qianfan_export_wait import (
    ExportFailedError,
    ExportOutcome,
    ExportTimeoutError,
    ExportWaiter,
    PollPolicy,
)
from qianfan_export_wait.waiting.health import OUTAGE_AFTER_FAILURES

# The waiter fetching files itself (downloader=) is deprecated; these test it still.
pytestmark = pytest.mark.filterwarnings("ignore:ExportWaiter\\(downloader=:DeprecationWarning")

# -- the world's constants ------------------------------------------------------------------

MIN_DELAY = 1.0
POLICY = PollPolicy(min_delay=MIN_DELAY, max_delay=16.0, timeout=30.0)
QPS = 10.0
EXPORTS = (1, 2, 3, 4, 5)  # <= QPS * MIN_DELAY / 2: the rate limit carries every last look
assert len(EXPORTS) <= QPS * MIN_DELAY / 2
TIMEOUTS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0)
HOLDS = (0.3, 1.0, 2.5)
DOWNLOAD_DELAY = 0.5
EPS = 1e-6

settings.register_profile(
    "model-ci",
    max_examples=int(os.environ.get("QEW_MODEL_EXAMPLES", "300")),
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "model-nightly",
    max_examples=int(os.environ.get("QEW_MODEL_EXAMPLES", "5000")),
    derandomize=False,
    deadline=None,
    stateful_step_count=80,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
PROFILE = os.environ.get("QEW_MODEL_PROFILE", "model-ci")


# -- what the model knows of each caller ----------------------------------------------------


@dataclass
class Seen:
    """One outcome as the caller saw it."""

    kind: str
    status: Any
    made: float  # when the waiter made it (started + elapsed), or when seen (wait())
    status_age: float | str | None = "absent"  # "absent": the field does not exist
    error: Any = None


@dataclass
class ModelCaller:
    number: int
    kind: str  # wait, submit, wait_all, stream
    ids: list[int]
    timeout: float
    started: float
    outcomes: dict[int, list[Seen]] = field(default_factory=dict)
    left_at: float | None = None
    how: str | None = None
    ended: bool = False  # its call returned or raised
    problems: list[str] = field(default_factory=list)
    task: asyncio.Task[Any] | None = None
    handle: Any = None
    stream: Any = None
    stop_after: int | None = None

    @property
    def deadline(self) -> float:
        return self.started + self.timeout

    def wants(self, export_id: int) -> bool:
        return self.left_at is None and export_id in self.ids and export_id not in self.outcomes

    @property
    def live(self) -> bool:
        return self.left_at is None and any(self.wants(x) for x in self.ids)

    def __repr__(self) -> str:
        return (
            f"<caller #{self.number} {self.kind}{self.ids} timeout={self.timeout} "
            f"started={self.started:g} left={self.left_at} how={self.how}>"
        )


def _seen_from(outcome: ExportOutcome, started: float) -> Seen:
    return Seen(
        outcome.kind.value,
        outcome.status,
        started + outcome.elapsed,
        getattr(outcome, "status_age", "absent"),
        outcome.error,
    )


class WaiterModel(RuleBasedStateMachine):
    """Callers come and go on one waiter; the API answers anything; every promise holds."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualLoop()
        self.unseen: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.unseen.append(context))
        self.callers: list[ModelCaller] = []
        self.own: set[asyncio.Task[Any]] = set()
        self.obligations: list[tuple[int, float, ModelCaller]] = []
        self.quiet = False
        self.waiter: ExportWaiter = None  # type: ignore[assignment]
        self.api: FakeApi = None  # type: ignore[assignment]
        self.downloader: FakeDownloader | None = None
        self.clock: LoopClock = None  # type: ignore[assignment]
        self.window = MIN_DELAY

    # -- driving the loop --------------------------------------------------------------

    def act(self, yields: int, action: Callable[[], Any]) -> Any:
        """Let the loop run ``yields`` iterations, then do ``action`` inside it."""

        async def step() -> Any:
            for _ in range(yields):
                await asyncio.sleep(0)
            return action()

        self.quiet = False
        return self.loop.run_until_complete(step())

    def run(self, coroutine: Any, *, quiet: bool) -> None:
        self.loop.run_until_complete(coroutine)
        self.quiet = quiet
        if quiet:
            self.mark_unwanted()

    @property
    def now(self) -> float:
        return self.loop.virtual_now

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coroutine)
        self.own.add(task)
        return task

    def new_caller(self, kind: str, ids: list[int], timeout: float) -> ModelCaller:
        caller = ModelCaller(len(self.callers), kind, list(ids), timeout, self.now)
        self.callers.append(caller)
        for export_id in ids:
            self.api.unwanted.discard(export_id)
        return caller

    def joined(self, caller: ModelCaller) -> None:
        """P3's obligations for a caller that joined now."""
        now = self.now
        for export_id in caller.ids:
            fresh = any(
                r.export_id == export_id
                and (r.ended == math.inf or (r.status is not None and r.ended > now - MIN_DELAY))
                for r in self.api.requests
            )
            if not fresh:
                self.obligations.append((export_id, now, caller))

    # -- setting up ----------------------------------------------------------------------

    @initialize(
        max_in_flight=st.integers(1, 4),
        plans=st.lists(
            st.tuples(
                st.lists(st.sampled_from([0.0, 0.5, 1.5, 3.0, 7.0, 20.0]), min_size=3, max_size=3),
                st.sampled_from(["Done", "Fail", None]),
            ),
            min_size=len(EXPORTS),
            max_size=len(EXPORTS),
        ),
        downloads=st.sampled_from([None, "ok", "fail"]),
    )
    def setup(
        self,
        max_in_flight: int,
        plans: list[tuple[list[float], str | None]],
        downloads: str | None,
    ) -> None:
        timelines = {}
        for export_id, (gaps, final) in zip(EXPORTS, plans, strict=True):
            at = 0.0
            changes = []
            for gap, state in zip(gaps, ["Doing", "Uploading", final], strict=True):
                at += gap
                if state is not None:
                    changes.append((at, state))
            timelines[export_id] = Timeline(changes)
        self.api = FakeApi(self.loop, timelines, max_in_flight)
        if downloads is not None:
            self.downloader = FakeDownloader(delay=DOWNLOAD_DELAY, fail=downloads == "fail")

        self.clock = LoopClock(self.loop)

        def make() -> None:
            self.waiter = ExportWaiter(
                self.api,  # type: ignore[arg-type]
                policy=POLICY,
                max_in_flight=max_in_flight,
                qps=QPS,
                clock=self.clock,
                downloader=self.downloader,  # type: ignore[arg-type]
            )

        self.act(0, make)
        core = getattr(self.waiter, "_core", None)
        self.window = MIN_DELAY + float(getattr(core, "resolution", 0.05)) + EPS
        limiter = self.waiter.limiter
        self.api.rate_now = lambda: float(limiter.rate)

    # -- callers arrive ------------------------------------------------------------------

    @rule(
        export_id=st.sampled_from(EXPORTS),
        timeout=st.sampled_from(TIMEOUTS),
        yields=st.integers(0, 6),
    )
    def call_wait(self, export_id: int, timeout: float, yields: int) -> None:
        """``await waiter.wait(id, timeout=)`` in a task."""

        def start() -> None:
            caller = self.new_caller("wait", [export_id], timeout)

            async def call() -> None:
                try:
                    status = await self.waiter.wait(export_id, timeout=timeout)
                except ExportFailedError as error:
                    self.saw(caller, export_id, Seen("failed", error.status, self.now))
                except ExportTimeoutError as error:
                    self.saw(caller, export_id, Seen("timeout", error.status, self.now))
                except asyncio.CancelledError:
                    caller.ended = True
                    raise
                except Exception as error:  # anything else is a broken promise (P1)
                    caller.problems.append(f"wait() raised {error!r}")
                else:
                    self.saw(caller, export_id, Seen("done", status, self.now))
                caller.ended = True

            caller.task = self.spawn(call())
            self.joined(caller)

        self.act(yields, start)

    def stale_waited(self) -> list[int]:
        """Exports some caller waits on whose last answer is older than ``min_delay``,
        with no request in flight: where a new caller must not inherit the backoff."""
        now = self.now
        stale = []
        for export_id in EXPORTS:
            if not any(c.wants(export_id) for c in self.callers if c.live):
                continue
            requests = [r for r in self.api.requests if r.export_id == export_id]
            if any(r.ended == math.inf for r in requests):
                continue
            answered = [r.ended for r in requests if r.status is not None]
            if answered and now - max(answered) > MIN_DELAY:
                stale.append(export_id)
        return stale

    @precondition(lambda self: self.waiter is not None and self.stale_waited())
    @rule(pick=st.integers(0, 100), timeout=st.sampled_from(TIMEOUTS[3:]))
    def join_a_stale_export(self, pick: int, timeout: float) -> None:
        """A new caller joins an export another caller waits on, whose last answer is
        old (P3's case, made common)."""
        stale = self.stale_waited()
        self.call_submit(stale[pick % len(stale)], timeout, 0)

    @rule(
        export_id=st.sampled_from(EXPORTS),
        timeout=st.sampled_from(TIMEOUTS),
        yields=st.integers(0, 6),
    )
    def call_submit(self, export_id: int, timeout: float, yields: int) -> None:
        """``handle = waiter.submit(id, timeout=)``, awaited by a task."""

        def start() -> None:
            caller = self.new_caller("submit", [export_id], timeout)
            handle = caller.handle = self.waiter.submit(export_id, timeout=timeout)

            async def watch() -> None:
                try:
                    outcome = await handle
                except asyncio.CancelledError:
                    caller.ended = True
                    raise
                except Exception as error:
                    caller.problems.append(f"the handle raised {error!r}")
                else:
                    self.saw(caller, export_id, _seen_from(outcome, caller.started))
                caller.ended = True

            caller.task = self.spawn(watch())
            self.joined(caller)

        self.act(yields, start)

    @rule(
        ids=st.lists(st.sampled_from(EXPORTS), min_size=1, max_size=len(EXPORTS), unique=True),
        timeout=st.sampled_from(TIMEOUTS),
        yields=st.integers(0, 6),
    )
    def call_wait_all(self, ids: list[int], timeout: float, yields: int) -> None:
        """``await waiter.wait_all(ids, timeout=)`` in a task."""

        def start() -> None:
            caller = self.new_caller("wait_all", ids, timeout)

            async def call() -> None:
                try:
                    report = await self.waiter.wait_all(ids, timeout=timeout)  # type: ignore[call-arg]
                except asyncio.CancelledError:
                    caller.ended = True
                    raise
                except Exception as error:
                    caller.problems.append(f"wait_all() raised {error!r}")
                else:
                    if list(report) != ids:
                        caller.problems.append(f"wait_all() reported {list(report)} for {ids}")
                    for outcome in report.outcomes:
                        self.saw(caller, outcome.export_id, _seen_from(outcome, caller.started))
                caller.ended = True

            caller.task = self.spawn(call())
            self.joined(caller)

        self.act(yields, start)

    @rule(
        ids=st.lists(st.sampled_from(EXPORTS), min_size=1, max_size=len(EXPORTS), unique=True),
        timeout=st.sampled_from(TIMEOUTS),
        stop_after=st.none() | st.integers(1, 4),
        scoped=st.booleans(),
        yields=st.integers(0, 6),
    )
    def call_as_completed(
        self, ids: list[int], timeout: float, stop_after: int | None, scoped: bool, yields: int
    ) -> None:
        """``async for outcome in waiter.as_completed(ids, timeout=)``, left with ``break``
        after ``stop_after`` outcomes (inside ``async with stream`` if ``scoped``)."""

        def start() -> None:
            caller = self.new_caller("stream", ids, timeout)
            caller.stop_after = stop_after
            try:
                stream = caller.stream = self.waiter.as_completed(ids, timeout=timeout)  # type: ignore[call-arg]
            except Exception as error:  # P5: the entry point takes a deadline
                caller.problems.append(f"as_completed() raised {error!r}")
                caller.ended = True
                return

            async def read() -> None:
                count = 0
                async for outcome in stream:
                    self.saw(caller, outcome.export_id, _seen_from(outcome, caller.started))
                    count += 1
                    if stop_after is not None and count >= stop_after:
                        if caller.left_at is None and caller.live:
                            caller.left_at, caller.how = self.now, "break"
                        break

            async def consume() -> None:
                caller.started = self.now  # the stream starts at its first iteration
                self.joined(caller)
                try:
                    if scoped:
                        async with stream:
                            await read()
                    else:
                        await read()
                except asyncio.CancelledError:
                    caller.ended = True
                    raise
                except Exception as error:
                    caller.problems.append(f"the stream raised {error!r}")
                caller.ended = True

            caller.task = self.spawn(consume())

        self.act(yields, start)

    # -- callers leave -------------------------------------------------------------------

    def leavers(self) -> list[ModelCaller]:
        return [c for c in self.callers if c.left_at is None and not c.ended]

    @precondition(lambda self: self.waiter is not None and self.leavers())
    @rule(
        pick=st.integers(0, 1000),
        how=st.sampled_from(["cancel-task", "cancel-handle", "release", "aclose"]),
        yields=st.integers(0, 12),
    )
    def leave(self, pick: int, how: str, yields: int) -> None:
        """A caller leaves: its task is cancelled, its handle cancelled, its stream
        released or closed; ``yields`` puts the leave at any loop iteration."""

        def go() -> None:
            candidates = self.leavers()
            if candidates:
                self.make_leave(candidates[pick % len(candidates)], how)

        self.act(yields, go)

    @precondition(lambda self: self.waiter is not None and self.leavers())
    @rule(how=st.sampled_from(["cancel-task", "cancel-handle", "release", "aclose"]))
    def everyone_leaves_at_a_handout(self, how: str) -> None:
        """Time runs until a poll is handed out and not yet sent (the waiter counts it in
        flight, the API has not seen it), and in that very loop iteration every caller
        leaves: the poll nobody wants must give its slot back (the wedge)."""
        waiter, api, loop = self.waiter, self.api, self.loop

        async def go() -> None:
            for _ in range(2000):
                if waiter.stats.in_flight > api.in_flight:
                    for caller in self.leavers():
                        self.make_leave(caller, how)
                    return
                if not loop.busy():
                    when = loop.next_timer()
                    if when >= self.now + 60.0:
                        return
                    loop.virtual_now = max(self.now, when)
                await asyncio.sleep(0)

        self.run(go(), quiet=False)

    def make_leave(self, caller: ModelCaller, how: str) -> None:
        """``caller`` leaves the way ``how`` says (or the nearest its kind allows)."""
        mode = how
        if caller.kind != "stream" and mode in ("release", "aclose"):
            mode = "cancel-task"
        if caller.kind != "submit" and mode == "cancel-handle":
            mode = "cancel-task"
        if caller.live:
            caller.left_at, caller.how = self.now, mode
        else:
            caller.how = mode
        if mode == "cancel-task":
            assert caller.task is not None
            caller.task.cancel()
        elif mode == "cancel-handle":
            caller.handle.cancel()
        elif mode == "release":
            caller.stream.release()
        else:
            self.spawn(caller.stream.aclose())

    # -- the API misbehaves --------------------------------------------------------------

    @precondition(lambda self: self.waiter is not None)
    @rule(
        export_id=st.sampled_from(EXPORTS),
        fault=st.sampled_from(["throttle", "throttle-retry-after", "transient"]),
        times=st.integers(1, 3),
    )
    def fail_next(self, export_id: int, fault: str, times: int) -> None:
        """The next requests for an export fail."""
        self.api.faults.setdefault(export_id, []).extend([fault] * times)

    @precondition(lambda self: self.waiter is not None)
    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0]))
    def outage(self, seconds: float) -> None:
        """Every request fails for a while."""
        self.api.start_outage(seconds)

    @precondition(lambda self: self.waiter is not None)
    @rule(export_id=st.sampled_from(EXPORTS), hold=st.sampled_from(HOLDS))
    def slow_answer(self, export_id: int, hold: float) -> None:
        """The next answer for an export is held while others proceed."""
        self.api.holds.setdefault(export_id, []).append(hold)

    # -- time ------------------------------------------------------------------------------

    @precondition(lambda self: self.waiter is not None)
    @rule(iterations=st.integers(1, 8))
    def spin(self, iterations: int) -> None:
        """A few loop iterations, no time passing."""
        self.act(iterations, lambda: None)

    @precondition(lambda self: self.waiter is not None)
    @rule(iterations=st.integers(0, 8))
    def tick(self, iterations: int) -> None:
        """Run until every task is blocked, jump to the next timer, and stop after a few
        iterations (so that the next step can land between a hand-out and its worker)."""

        async def go() -> None:
            await drain(self.loop)
            when = self.loop.next_timer()
            if when < self.now + 60.0:
                self.loop.virtual_now = max(self.now, when)
            for _ in range(iterations):
                await asyncio.sleep(0)

        self.run(go(), quiet=False)

    @precondition(lambda self: self.waiter is not None)
    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, every timer firing in order."""
        self.run(run_until(self.loop, self.now + seconds), quiet=True)

    # -- recording -----------------------------------------------------------------------

    def saw(self, caller: ModelCaller, export_id: int, seen: Seen) -> None:
        caller.outcomes.setdefault(export_id, []).append(seen)

    def mark_unwanted(self) -> None:
        wanted = {x for c in self.callers for x in c.ids if c.wants(x)}
        self.api.unwanted = set(EXPORTS) - wanted

    def answers_for(self, export_id: int) -> list[Request]:
        return [r for r in self.api.requests if r.export_id == export_id and r.status is not None]

    def waiter_tasks(self) -> list[asyncio.Task[Any]]:
        current = asyncio.current_task(self.loop) if self.loop.is_running() else None
        return [
            t
            for t in asyncio.all_tasks(self.loop)
            if t not in self.own and t is not current and not t.done()
        ]

    def capacity_lost(self, start: float, end: float) -> bool:
        """Whether the rate limit could not carry every poll in ``[start, end]``."""
        return (
            self.api.faults_during(start - FakeApi.RETRY_AFTER, end)
            or self.saturated(start, end)
            or self.slowed(start, end)
            or self.believed_down(start)
        )

    def believed_down(self, at: float) -> bool:
        """Whether the waiter had no answer since its last run of failures long enough to
        call an outage (it then sends one probe at a time, on a backoff, by design)."""
        ended = sorted(
            (r for r in self.api.requests if r.ended <= at and not r.cancelled),
            key=lambda r: r.ended,
        )
        run = 0
        for r in reversed(ended):
            if r.status is not None:
                break
            if r.fault in ("outage", "transient"):
                run += 1
        return run >= OUTAGE_AFTER_FAILURES

    def rate_used_up(self, start: float, end: float) -> bool:
        """Whether the requests sent in ``[start, end]`` took every slot the rate limit
        had there (a caller whose timeout is shorter than the window has fewer slots than
        exports; one poll handed out just before its caller left still goes)."""
        rates = [r.rate for r in self.api.requests if start - EPS <= r.sent <= end + EPS]
        rate = min(rates, default=QPS)
        return len(rates) >= math.floor(rate * (end - start) + EPS)

    def slowed(self, start: float, end: float) -> bool:
        """Whether the limiter's rate in ``[start, end]`` was too low to send a look for
        every export within the window (throttles slow the adaptive limiter for a while)."""
        needed = len(EXPORTS) / self.window
        requests = self.api.requests
        before = [r.rate for r in requests if r.sent < start]
        rates = [r.rate for r in requests if start <= r.sent <= end] + before[-1:]
        return min(rates, default=math.inf) < needed

    def saturated(self, start: float, end: float) -> bool:
        """Whether the in-flight budget was full at some moment of ``[start, end]``."""
        api = self.api
        proven = [r.ended for r in api.requests if r.status is not None or r.retry_after]
        proven_at = min(proven, default=math.inf)
        for r in api.requests:
            if r.ended <= r.sent or r.ended < start or r.sent > end:
                continue
            point = max(r.sent, start)
            count = sum(1 for q in api.requests if q.sent <= point < q.ended)
            limit = api.max_in_flight if point >= proven_at else 1
            if count >= limit:
                return True
        return False

    # -- the promises --------------------------------------------------------------------

    def check_p1_one_outcome_each(self) -> None:
        """P1: every caller gets exactly one outcome per export it asked for: none twice,
        none for an id it did not ask for, none made after it left, no exception it did
        not ask for, no error outcome (nothing in this world ends an export as error), a
        done/failed outcome backed by such an answer, and nothing unseen on the loop."""
        assert not self.unseen, f"P1: the loop saw errors nobody retrieved: {self.unseen}"
        for caller in self.callers:
            assert not caller.problems, f"P1: {caller}: {caller.problems}"
            for export_id, seen in caller.outcomes.items():
                assert export_id in caller.ids, f"P1: {caller} got an outcome for {export_id}"
                assert len(seen) == 1, f"P1: {caller} got {len(seen)} outcomes for {export_id}"
                (one,) = seen
                if caller.left_at is not None:
                    assert one.made <= caller.left_at + EPS, (
                        f"P1: {caller} got {export_id}'s outcome at {one.made:g}, "
                        f"after leaving at {caller.left_at:g}"
                    )
                assert one.kind != "error", (
                    f"P1: {caller}: {export_id} ended as error {one.error!r}"
                )
                if one.kind in ("done", "failed"):
                    state = "Done" if one.kind == "done" else "Fail"
                    backed = [
                        r
                        for r in self.answers_for(export_id)
                        if r.state == state and r.ended <= one.made + EPS
                    ]
                    assert backed, f"P1: {caller}: {export_id} {one.kind} without a {state} answer"

    def check_p2_timeouts(self) -> None:
        """P2: a timeout means no terminal answer arrived before the caller's deadline, and
        a last look went within the window before it (when the rate limit could carry it);
        it is made at the deadline, carries the last status received, and says its age."""
        for caller in self.callers:
            deadline = caller.deadline
            for export_id, seen in caller.outcomes.items():
                one = seen[0]
                requests = [r for r in self.api.requests if r.export_id == export_id]
                if one.status_age != "absent":
                    self.check_status_age(caller, export_id, one, requests)
                if one.kind != "timeout":
                    continue
                terminal = [
                    r
                    for r in requests
                    if r.state in TERMINAL and caller.started + EPS < r.ended < one.made - EPS
                ]
                assert not terminal, (
                    f"P2: {caller}: timeout for {export_id} at {one.made:g} though "
                    f"{terminal[0].state} was received at {terminal[0].ended:g}"
                )
                if caller.kind != "wait":  # wait() shows no elapsed time: made is when seen
                    assert one.made >= deadline - EPS, (
                        f"P2: {caller}: timeout for {export_id} made at {one.made:g}, "
                        f"before the deadline {deadline:g}"
                    )
                # The carried status is the last received (ties at one instant either way).
                received = [
                    r for r in requests if r.status is not None and r.ended <= one.made + EPS
                ]
                earlier = [r for r in received if r.ended < one.made - EPS]
                if earlier and one.status is not None:
                    last = max(r.ended for r in earlier)
                    carried = [r for r in received if r.status is one.status]
                    assert carried and carried[0].ended >= last - EPS, (
                        f"P2: {caller}: timeout for {export_id} carries a status received at "
                        f"{carried[0].ended if carried else '?'}, the last came at {last:g}"
                    )
                if one.status is None:
                    # (an answer at the instant the caller came may have been read before it joined)
                    since = [r for r in earlier if r.ended > caller.started + EPS]
                    assert not since, (
                        f"P2: {caller}: timeout for {export_id} carries no status, though "
                        f"one was received at {since[0].ended:g}"
                    )
                start = deadline - self.window
                if self.capacity_lost(start, deadline) or self.rate_used_up(
                    max(start, caller.started), deadline
                ):
                    continue
                looked = [
                    r
                    for r in requests
                    if r.sent <= one.made + EPS and max(r.sent, r.ended) >= start
                ]
                assert looked, (
                    f"P2: {caller}: timeout for {export_id} at {one.made:g} without a last "
                    f"look in [{start:g}, {deadline:g}]; its requests (sent, ended, state): "
                    f"{[(r.sent, r.ended, r.state or r.fault) for r in requests]}"
                )

    def check_status_age(
        self, caller: ModelCaller, export_id: int, one: Seen, requests: list[Request]
    ) -> None:
        """P2 (status_age): the time since the carried status was received."""
        if one.status is None:
            assert one.status_age is None, f"P2: {caller}: status_age without a status"
            return
        carried = [r for r in requests if r.status is one.status]
        assert carried, f"P2: {caller}: {export_id}'s status was never answered by the API"
        expected = one.made - carried[0].ended
        assert one.status_age is not None and abs(one.status_age - expected) < 1e-6, (
            f"P2: {caller}: {export_id} status_age {one.status_age}, expected {expected:g} "
            f"(received at {carried[0].ended:g}, outcome made at {one.made:g})"
        )

    def check_p3_join_polls(self) -> None:
        """P3: a caller that joins an export whose last answer is older than min_delay gets
        a poll of it within the window (when the rate limit allows)."""
        now = self.now
        keep = []
        for export_id, joined, caller in self.obligations:
            end = joined + self.window
            if now < end or not self.quiet:
                keep.append((export_id, joined, caller))
                continue
            outcome = caller.outcomes.get(export_id)
            if caller.left_at is not None and caller.left_at < end:
                continue
            if outcome and outcome[0].made < end:
                continue
            if self.capacity_lost(joined, end) or self.rate_used_up(joined, end):
                continue
            polled = [
                r
                for r in self.api.requests
                if r.export_id == export_id and joined - EPS <= r.sent <= end
            ]
            polled_ever = [r for r in self.api.requests if r.export_id == export_id]
            assert polled, (
                f"P3: {caller} joined {export_id} at {joined:g} (its last answer older than "
                f"{MIN_DELAY:g} s) and got no poll by {end:g}; requests: "
                f"{[(r.sent, r.ended, r.state or r.fault) for r in polled_ever]}"
            )
        self.obligations = keep

    def check_p4_in_flight_and_memory(self) -> None:
        """P4: at most max_in_flight requests in flight; when the loop is quiet: none in
        flight and none sent for an export nobody wants, the waiter's tables match what is
        really in flight, its tasks are bounded and gone once no caller is left, and it
        keeps nothing for an export nobody wants."""
        assert not self.api.violations, self.api.violations[0]
        assert not self.clock.spins, self.clock.spins[0]
        if not self.quiet:
            return
        wanted = {x for c in self.callers for x in c.ids if c.wants(x)}
        for export_id in EXPORTS:
            if export_id not in wanted:
                assert self.api.in_flight_for(export_id) == 0, (
                    f"P4: a request for {export_id} in flight at t={self.now:g}, nobody wants it"
                )
        stats = self.waiter.stats
        assert stats.in_flight == self.api.in_flight, (
            f"P4: the waiter counts {stats.in_flight} polls in flight, the API has "
            f"{self.api.in_flight} (t={self.now:g})"
        )
        active = self.downloader.active if self.downloader is not None else 0
        assert stats.downloading == active, (
            f"P4: the waiter counts {stats.downloading} downloads, {active} are running"
        )
        entries = getattr(getattr(self.waiter, "_core", None), "entries", None)
        if entries is not None:
            stale = set(entries) - wanted
            assert not stale, f"P4: the waiter keeps {sorted(stale)} that nobody wants"
        live = [c for c in self.callers if c.live]
        assert stats.callers == len(live), (
            f"P4: the waiter counts {stats.callers} callers, {len(live)} are waiting "
            f"(t={self.now:g}): {live}; others: "
            f"{[(c, sorted(c.outcomes), c.ended) for c in self.callers if not c.live]}"
        )
        tasks = self.waiter_tasks()
        if not live:
            assert not tasks, f"P4: no caller is left, yet the waiter runs {tasks}"
        else:
            bound = 1 + self.api.max_in_flight + active + 1
            assert len(tasks) <= bound, f"P4: {len(tasks)} tasks for {len(live)} callers"

    def check_p5_deadlines(self) -> None:
        """P5: every caller that stayed has every outcome by its deadline plus the longest
        answer hold and download, and its call has returned."""
        if not self.quiet:
            return
        grace = max(HOLDS) + DOWNLOAD_DELAY + self.window
        for caller in self.callers:
            if caller.left_at is not None:
                continue
            if self.now >= caller.deadline + grace:
                missing = [x for x in caller.ids if x not in caller.outcomes]
                assert not missing, (
                    f"P5: {caller}: no outcome for {missing} by t={self.now:g}, "
                    f"deadline {caller.deadline:g}"
                )
                assert caller.ended, f"P5: {caller}: its call has not returned by t={self.now:g}"

    @invariant()
    def promises(self) -> None:
        if self.waiter is None:
            return
        self.check_p1_one_outcome_each()
        self.check_p2_timeouts()
        self.check_p3_join_polls()
        self.check_p4_in_flight_and_memory()
        self.check_p5_deadlines()

    def teardown(self) -> None:
        try:
            if self.waiter is not None and not self.unseen_failure():
                # Every deadline passes: every caller that stayed has its outcomes, and
                # nothing of the waiter is left (P1, P4, P5).
                last = max((c.deadline for c in self.callers), default=self.now)
                grace = max(HOLDS) + DOWNLOAD_DELAY + self.window
                self.run(run_until(self.loop, max(last, self.now) + grace + 1.0), quiet=True)
                self.promises()
                assert not [c for c in self.callers if c.left_at is None and not c.ended]
        finally:
            self.close()

    def unseen_failure(self) -> bool:
        return False

    def close(self) -> None:
        loop = self.loop

        async def shut() -> None:
            for task in self.own:
                task.cancel()
            if self.waiter is not None:
                await self.waiter.aclose()
            await drain(loop)

        try:
            loop.run_until_complete(shut())
        finally:
            self.callers.clear()
            self.own.clear()
            gc.collect()
            loop.close()
        assert not self.unseen, f"P1: the loop saw errors nobody retrieved: {self.unseen}"


def test_every_promise_holds_under_any_caller_interleaving() -> None:
    run_state_machine_as_test(WaiterModel, settings=settings(settings.get_profile(PROFILE)))
