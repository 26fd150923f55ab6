"""The instrumentation seam: what an ``Observer`` is told, and that no observer can hurt a
wait (virtual clock, in-memory client)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from waiter_support import make_waiter

from qianfan_export_wait import (
    AuthError,
    InvalidRequestError,
    OutcomeKind,
    PollPolicy,
    StateChange,
    ThrottledError,
    TransientError,
)
from qianfan_export_wait.errors import UnexpectedAnswerError
from qianfan_export_wait.integrations import default_observers
from qianfan_export_wait.models import ExportId
from qianfan_export_wait.observe import (
    NO_OBSERVERS,
    OUTCOME_KINDS,
    Observer,
    PollEvent,
    RequestKind,
    classify_request,
)
from qianfan_export_wait.waiting.outcomes import ExportOutcome, WaiterEvent


class Scope:
    def __init__(self, log: list[Any], how: str, ids: Sequence[ExportId]) -> None:
        self.log = log
        self.how = how
        self.ids = list(ids)
        self.outcomes: list[ExportOutcome] = []
        self.ended: list[BaseException | None] = []

    def outcome(self, outcome: ExportOutcome) -> None:
        self.outcomes.append(outcome)

    def end(self, error: BaseException | None = None) -> None:
        self.ended.append(error)


class Recorder(Observer):
    def __init__(self) -> None:
        self.bound: list[Any] = []
        self.requests: list[PollEvent] = []
        self.events: list[WaiterEvent] = []
        self.scopes: list[Scope] = []

    def bind(self, waiter: Any) -> None:
        self.bound.append(waiter)

    def request(self, event: PollEvent) -> None:
        self.requests.append(event)

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> Scope:
        scope = Scope([], how, export_ids)
        self.scopes.append(scope)
        return scope

    def state_changed(self, change: StateChange) -> None:
        self.events.append(change)

    def finished(self, outcome: ExportOutcome) -> None:
        self.events.append(outcome)


def test_request_kinds_cover_every_answer() -> None:
    assert classify_request(None) is RequestKind.OK
    assert classify_request(ThrottledError("slow")) is RequestKind.THROTTLED
    assert classify_request(TransientError("blip")) is RequestKind.TRANSIENT
    assert classify_request(UnexpectedAnswerError("other", log_id="x")) is RequestKind.UNEXPECTED
    assert classify_request(AuthError("no")) is RequestKind.AUTH
    assert classify_request(InvalidRequestError("bad id")) is RequestKind.INVALID
    assert classify_request(RuntimeError("bug")) is RequestKind.UNEXPECTED


async def test_an_observer_sees_requests_state_changes_and_each_callers_outcomes() -> None:
    recorder = Recorder()
    script = {
        1: [ThrottledError("slow", log_id="t1"), "Pending", "Done"],
        2: [TransientError("blip", log_id="e2"), "Done"],
        3: [InvalidRequestError("unknown", log_id="i3")],
    }
    policy = PollPolicy(min_delay=1, max_delay=1, timeout=100)
    waiter, client, _ = make_waiter(script, policy=policy, observers=[recorder])
    assert recorder.bound == [waiter]
    handle = waiter.submit(1)
    report = await waiter.wait_all([1, 2, 3])
    assert (await handle).kind is OutcomeKind.DONE
    # One event per request sent, with the answer's kind and log id.
    assert len(recorder.requests) == len(client.calls)
    kinds = {(e.export_id, e.kind, e.log_id) for e in recorder.requests}
    assert (1, RequestKind.THROTTLED, "t1") in kinds
    assert (2, RequestKind.TRANSIENT, "e2") in kinds
    assert (3, RequestKind.INVALID, "i3") in kinds
    assert (1, RequestKind.OK, "1") in kinds
    ok = [e for e in recorder.requests if e.kind is RequestKind.OK]
    assert all(e.status is not None and e.error is None for e in ok)
    # Two callers, two scopes: each got its outcomes once and ended once, cleanly.
    wait_scope, all_scope = recorder.scopes
    assert (wait_scope.how, wait_scope.ids) == ("wait", [1])
    assert [o.kind for o in wait_scope.outcomes] == [OutcomeKind.DONE]
    assert (all_scope.how, all_scope.ids) == ("wait_all", [1, 2, 3])
    assert sorted((o.export_id, o.kind) for o in all_scope.outcomes) == [
        (1, OutcomeKind.DONE),
        (2, OutcomeKind.DONE),
        (3, OutcomeKind.ERROR),
    ]
    assert wait_scope.ended == [None] and all_scope.ended == [None]
    assert report[3].kind is OutcomeKind.ERROR
    changes = [e for e in recorder.events if isinstance(e, StateChange)]
    assert [(c.export_id, c.state) for c in changes] == [(1, "Pending")]
    finals = [e for e in recorder.events if isinstance(e, ExportOutcome)]
    assert sorted(o.export_id for o in finals) == [1, 2, 3]  # once per export


async def test_latency_is_measured_on_the_waiters_clock() -> None:
    from fakes import ScriptedClient

    from qianfan_export_wait import ExportWaiter
    from qianfan_export_wait.ratelimit import FixedRateLimiter
    from qianfan_export_wait.waiting import VirtualClock

    recorder = Recorder()
    clock = VirtualClock()
    client = ScriptedClient(clock, {5: ["Done"]})
    fetch = client.fetch_once

    async def slow(export_id: int | str) -> Any:
        await clock.sleep(0.25)
        return await fetch(export_id)

    client.fetch_once = slow  # type: ignore[method-assign]
    waiter = ExportWaiter(
        client,  # type: ignore[arg-type]
        clock=clock,
        limiter=FixedRateLimiter(1e6),
        observers=[recorder],
    )
    await waiter.wait(5)
    assert [e.latency for e in recorder.requests] == pytest.approx([0.25])


async def test_as_completed_scope_ends_when_the_stream_ends_or_is_left() -> None:
    recorder = Recorder()
    waiter, _, _ = make_waiter({1: ["Done"], 2: ["Running"]}, observers=[recorder])
    stream = waiter.as_completed([1, 2], timeout=5)
    seen = [outcome async for outcome in stream]
    (scope,) = recorder.scopes
    assert scope.how == "as_completed"
    assert [o.export_id for o in scope.outcomes] == [o.export_id for o in seen]
    assert scope.ended == [None]
    left = waiter.as_completed([1, 2], timeout=None)
    async for outcome in left:
        assert outcome.export_id == 1
        break
    await left.aclose()
    assert recorder.scopes[1].ended == [None]  # left early: ended once all the same


async def test_a_cancelled_wait_ends_its_scope_with_the_cancellation() -> None:
    recorder = Recorder()
    waiter, _, _ = make_waiter({1: ["Running"]}, observers=[recorder])
    task = asyncio.ensure_future(waiter.wait_all([1], timeout=None))
    handle = waiter.submit(1, timeout=None)
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert all(
        len(s.ended) == 1 and isinstance(s.ended[0], asyncio.CancelledError)
        for s in recorder.scopes
    )
    await waiter.aclose()


class Broken(Observer):
    def bind(self, waiter: Any) -> None:
        raise RuntimeError("bind")

    def request(self, event: PollEvent) -> None:
        raise RuntimeError("request")

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> Any:
        raise RuntimeError("wait")

    def state_changed(self, change: StateChange) -> None:
        raise ValueError("state_changed")

    def finished(self, outcome: ExportOutcome) -> None:
        raise ValueError("finished")


async def test_a_broken_observer_loses_nothing_and_is_logged_once_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="qianfan_export_wait")
    recorder = Recorder()
    script = {i: ["Pending", "Running", "Done"] for i in range(1, 6)}
    waiter, _, _ = make_waiter(script, observers=[Broken(), recorder])
    report = await waiter.wait_all(list(script))
    assert [report[i].kind for i in script] == [OutcomeKind.DONE] * 5
    assert len(recorder.requests) == 15  # the good observer still sees everything
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(r.getMessage().split(" raised")[0] for r in errors) == [
        "observer Broken.bind",
        "observer Broken.finished",
        "observer Broken.request",
        "observer Broken.state_changed",
        "observer Broken.wait",
    ]


def test_observers_must_be_observers() -> None:
    from qianfan_export_wait.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="Observer instances, got object"):
        make_waiter({1: ["Done"]}, observers=[object()])


def test_without_the_optional_packages_there_are_no_default_observers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("prometheus_client", "opentelemetry", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    for name in ("qianfan_export_wait.metrics", "qianfan_export_wait.tracing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert default_observers() == []


async def test_a_waiter_works_without_the_optional_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("prometheus_client", "opentelemetry", "opentelemetry.trace", "tqdm"):
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    for name in ("qianfan_export_wait.metrics", "qianfan_export_wait.tracing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    waiter, _, _ = make_waiter({1: ["Running", "Done"]})
    assert waiter._instruments.observers == []
    assert waiter._instruments.poll is None  # nothing measured when nobody listens
    assert waiter._driver._fetch == waiter.client.fetch_once  # not even wrapped
    assert (await waiter.wait_all([1]))[1].kind is OutcomeKind.DONE


def test_no_observers_means_none() -> None:
    waiter, _, _ = make_waiter({1: ["Done"]}, observers=NO_OBSERVERS)
    assert waiter._instruments.observers == []


def test_the_optional_packages_are_imported_only_when_a_waiter_is_made() -> None:
    import subprocess

    probe = (
        "import sys\n"
        "import qianfan_export_wait.waiting, qianfan_export_wait.observe\n"
        "heavy = ('prometheus_client', 'opentelemetry', 'tqdm')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


async def test_a_reader_that_stops_waiting_for_a_while_keeps_its_stream_observed() -> None:
    recorder = Recorder()
    waiter, client, _ = make_waiter({1: ["Running"], 2: ["Done"]}, observers=[recorder])
    stream = waiter.as_completed([1, 2], timeout=None)
    async with stream:
        first = await stream.__anext__()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 0.01)  # nothing more yet
        (scope,) = recorder.scopes
        assert scope.ended == []  # still waiting: the scope goes on
        client.script[1] = ["Done"]
        second = await stream.__anext__()
    assert [o.export_id for o in scope.outcomes] == [first.export_id, second.export_id]
    assert scope.ended == [None]


async def test_a_request_outside_the_schedule_is_observed_too() -> None:
    """A download's fresh-link request (``fetch_now``) is a request the service counts."""
    recorder = Recorder()
    waiter, _, _ = make_waiter(
        {9: [ThrottledError("slow", log_id="T9"), "Done"]}, observers=[recorder]
    )
    with pytest.raises(ThrottledError):
        await waiter._driver.fetch_now(9)
    status = await waiter._driver.fetch_now(9)
    assert status.state_name == "Done"
    assert [(e.export_id, e.kind, e.log_id) for e in recorder.requests] == [
        (9, RequestKind.THROTTLED, "T9"),
        (9, RequestKind.OK, "1"),
    ]


def test_the_outcome_kinds_spelled_for_observers_are_outcome_kinds() -> None:
    assert list(OUTCOME_KINDS) == [kind.value for kind in OutcomeKind]
