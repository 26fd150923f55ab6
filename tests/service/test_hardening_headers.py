"""Hostile headers: a ``Retry-After`` of a day cannot freeze the waiter, and a 503 with one
still counts toward ``max_unavailable``.

Two servers, both on the waiter's virtual clock so two minutes of schedule run in a
moment and nothing is timed: an in-memory API that counts each request at the virtual
instant it is sent (a faithful 20/s window) and builds its errors from real headers
with ``classify_response``; and the simulator, a real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from fakes import Request, ScriptedClient
from statuses import make_status
from waiter_support import make_waiter

from qianfan_export_wait import (
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
)
from qianfan_export_wait.errors import (
    ConfigurationError,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
)
from qianfan_export_wait.models import ExportStatus
from qianfan_export_wait.protocol.classify import classify_response
from qianfan_export_wait.simulator import Simulator, SimulatorConfig
from qianfan_export_wait.simulator.limits import QpsWindow
from qianfan_export_wait.testing import generate_credentials
from qianfan_export_wait.waiting import VirtualClock
from qianfan_export_wait.waiting.policy import RetryAfterBound

A_DAY = "86400"


async def _retry_after_a_day(request: web.Request, response: web.StreamResponse) -> None:
    # The simulator says Retry-After on every throttle; this server says a day.
    if "Retry-After" in response.headers:
        response.headers["Retry-After"] = A_DAY


class ThrottlingApi(ScriptedClient):
    """The fake status client as the export-status API: at most ``qps`` answers in any
    one second of the virtual clock (a sliding window, as the simulator's), each throttle
    an ``error_code: 18`` answer with ``Retry-After: 86400`` classified as the client does;
    export ``i`` of ``n`` is Done from ``10 * i / n`` s on."""

    def __init__(self, clock: VirtualClock, *, exports: int, qps: int) -> None:
        super().__init__(clock)
        self.exports = exports
        self.window = QpsWindow(qps)

    async def answer(self, request: Request) -> ExportStatus:
        now = request.sent
        if not self.window.try_acquire(now):
            self.stats.throttled += 1
            error = classify_response(
                200, {"error_code": 18, "error_msg": "qps limit"}, {"Retry-After": A_DAY}
            )
            assert error is not None
            raise error
        done_at = 10.0 * request.export_id / self.exports
        return make_status(request.export_id, "Done" if now >= done_at else "Running")


async def test_retry_after_of_a_day_cannot_freeze_the_waiter_at_the_virtual_instant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The run: 20/s, 300 exports Done by 10 s, timeout 120 s. Before the bound,
    # the first throttle held every request for an hour: all 300 timed out, unlogged.
    clock = VirtualClock()
    api = ThrottlingApi(clock, exports=300, qps=20)
    waiter = ExportWaiter(
        api,  # type: ignore[arg-type]
        policy=PollPolicy(min_delay=1, max_delay=10, timeout=120),
        clock=clock,
    )
    with caplog.at_level(logging.WARNING, logger="qianfan_export_wait"):
        report = await waiter.wait_all(range(1, 301))
    kinds = [outcome.kind for outcome in report.values()]
    assert api.stats.throttled > 0, "the server must throttle for this test to mean anything"
    assert kinds == [OutcomeKind.DONE] * 300, {kind: kinds.count(kind) for kind in OutcomeKind}
    paused = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert paused and {r.levelno for r in paused} == {logging.WARNING}
    # Never more than max_retry_after between two requests, whatever the header said.
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent for sent, _ in api.calls)]
    assert max(gaps) <= PollPolicy().max_retry_after + 1e-9


@asynccontextmanager
async def throttling_server(
    clock: VirtualClock, *, exports: int, qps: int
) -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator at ``qps`` on ``clock`` whose throttles say ``Retry-After: 86400``,
    with ``exports`` exports all Done within 10 s."""
    simulator = Simulator(
        generate_credentials(),
        SimulatorConfig(seed=21, qps=qps, retry_after=1.0),
        clock=clock.now,
    )
    simulator.add_exports(exports, max_seconds=10.0, fail_ratio=0.0)
    simulator.app.on_response_prepare.append(_retry_after_a_day)
    async with simulator.serve() as base_url:
        yield simulator, base_url


async def test_retry_after_of_a_day_from_a_throttling_server_does_not_freeze_the_waiter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The run: 20/s, 300 exports Done by 10 s, timeout 120 s. Before the bound,
    # the first throttle held every request for an hour: all 300 timed out, unlogged.
    clock = VirtualClock()
    async with throttling_server(clock, exports=300, qps=20) as (simulator, base_url):
        async with ExportStatusClient(
            simulator.credentials, base_url=base_url, max_attempts=1
        ) as client:
            waiter = ExportWaiter(
                client, policy=PollPolicy(min_delay=1, max_delay=10, timeout=120), clock=clock
            )
            with caplog.at_level(logging.WARNING, logger="qianfan_export_wait"):
                report = await waiter.wait_all(range(1, 301))
        throttled = simulator.stats.requests_by_outcome["throttled"]
    kinds = {export_id: outcome.kind for export_id, outcome in report.items()}
    assert throttled > 0, "the server must have throttled for this test to mean anything"
    assert set(kinds.values()) == {OutcomeKind.DONE}, {
        kind: sum(1 for k in kinds.values() if k is kind) for kind in OutcomeKind
    }
    paused = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert paused and {r.levelno for r in paused} == {logging.WARNING}


def _unavailable_for_a_day() -> TransientError:
    error = classify_response(503, None, {"Retry-After": A_DAY})
    assert isinstance(error, TransientError)
    return error


async def test_a_503_with_retry_after_of_a_day_still_ends_at_max_unavailable() -> None:
    # Before: the retry went at the deadline (600 s), so max_unavailable (60 s) was never
    # looked at and the export ended as a timeout; --max-unavailable meant nothing.
    waiter, client, clock = make_waiter(
        {1: [_unavailable_for_a_day], 2: ["Running", _unavailable_for_a_day]},
        policy=PollPolicy(min_delay=1, max_delay=10, timeout=600, max_unavailable=60),
    )
    report = await waiter.wait_all([1, 2])
    for outcome in report.values():
        assert outcome.kind is OutcomeKind.ERROR, outcome
        assert isinstance(outcome.error, ServiceUnavailableError)
        assert 60 <= outcome.error.unavailable_for <= 60 + PollPolicy().max_retry_after
        assert outcome.elapsed <= 61 + PollPolicy().max_retry_after
    # Retried no sooner than the bound allows, and no later either.
    times = client.times_for(1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps and max(gaps) <= PollPolicy().max_retry_after + 1e-9
    assert clock.now() < 600


def _throttled_for_a_day() -> ThrottledError:
    error = classify_response(429, None, {"Retry-After": A_DAY})
    assert isinstance(error, ThrottledError)
    return error


async def test_a_throttle_pause_never_runs_past_a_callers_deadline() -> None:
    # A minute's bound, a 5 s caller: its last look still goes at its deadline.
    waiter, client, _clock = make_waiter(
        {1: [_throttled_for_a_day, "Done"]},
        policy=PollPolicy(min_delay=1, max_delay=10, timeout=None, max_retry_after=60),
    )
    outcome = await waiter.submit(1, timeout=5)
    assert outcome.kind is OutcomeKind.DONE, outcome
    assert [when for when, _ in client.calls] == pytest.approx([0.0, 5.0], abs=0.01)


@pytest.mark.parametrize("bound", [0.0, 2.5, 10.0])
async def test_a_throttle_pause_is_the_bound_not_the_header(bound: float) -> None:
    waiter, client, _clock = make_waiter(
        {1: [_throttled_for_a_day, _throttled_for_a_day, "Done"]},
        policy=PollPolicy(min_delay=1, max_delay=10, timeout=100, max_retry_after=bound),
    )
    outcome = await waiter.submit(1)
    assert outcome.kind is OutcomeKind.DONE
    assert [when for when, _ in client.calls] == pytest.approx([0.0, bound, 2 * bound], abs=1e-5)


def test_max_retry_after_and_auth_cooldown_are_checked() -> None:
    for name in ("max_retry_after", "auth_cooldown"):
        with pytest.raises(ConfigurationError, match=f"{name} must be .* got -1"):
            PollPolicy(**{name: -1})
        with pytest.raises(ConfigurationError, match=name):
            PollPolicy(**{name: float("nan")})


def test_the_pause_is_logged_once_when_it_begins(caplog: pytest.LogCaptureFixture) -> None:
    bound = RetryAfterBound(PollPolicy(max_retry_after=10))
    with caplog.at_level(logging.WARNING, logger="qianfan_export_wait"):
        assert bound.pause(3600.0, 0.0, 100.0) == 10.0
        assert bound.pause(3600.0, 1.0, 100.0) == 10.0  # the same pause, not logged again
        assert bound.pause(None, 2.0, 100.0) is None
        assert bound.pause(3600.0, 20.0, 23.0) == 3.0  # a deadline 3 s away: 3 s
    assert len(caplog.records) == 2
    assert "3600" in caplog.records[0].getMessage()
