"""The waiter's behaviour on a virtual clock, with an in-memory client: schedule, deadline,
Retry-After, throttling, isolation, auth stop, cancellation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from fakes import Answer, ScriptedClient
from statuses import make_status
from tenacity import wait_exponential, wait_fixed
from waiter_support import make_waiter

from qianfan_export_wait import (
    AuthError,
    ExportFailedError,
    ExportTimeoutError,
    ExportWaiter,
    InvalidRequestError,
    OutcomeKind,
    PollPolicy,
    ServiceUnavailableError,
    StateChange,
    ThrottledError,
    TransientError,
    WaitReportError,
)
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.ratelimit import FixedRateLimiter, Reservation
from qianfan_export_wait.waiting import MonotonicClock, VirtualClock
from qianfan_export_wait.waiting.policy import batch_window


async def test_polls_follow_the_wait_strategy_until_done() -> None:
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(10))
    waiter, client, _ = make_waiter({7: ["Pending", "Uploading", "Done"]}, policy=policy)
    report = await waiter.wait_all([7])
    assert report[7].kind is OutcomeKind.DONE
    assert client.times_for(7) == pytest.approx([0, 10, 20])
    assert report[7].polls == 3


async def test_default_schedule_grows_between_min_and_max_delay() -> None:
    policy = PollPolicy(min_delay=2, max_delay=60, timeout=10_000)
    waiter, client, _ = make_waiter({1: ["Pending"] * 12 + ["Done"]}, policy=policy)
    await waiter.wait_all([1])
    times = client.times_for(1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(2 - 1e-9 <= gap <= 60 + 1e-9 for gap in gaps)
    assert gaps[0] <= 4 + 1e-9  # min_delay plus up to one min_delay of jitter
    assert max(gaps[-4:]) > 8  # it backs off, it does not poll at min_delay forever


async def test_deadline_rule_sleeps_only_until_the_deadline_and_polls_once_more() -> None:
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=100, wait=wait_fixed(40))
    waiter, client, _ = make_waiter({5: ["Pending"]}, policy=policy)
    report = await waiter.wait_all([5])
    assert client.times_for(5) == pytest.approx([0, 40, 80, 100])
    outcome = report[5]
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert outcome.status is not None and outcome.status.state_name == "Pending"
    assert outcome.elapsed == pytest.approx(100)


async def test_one_hour_schedule_runs_on_the_virtual_clock() -> None:
    policy = PollPolicy(min_delay=2, max_delay=60, timeout=3600)
    waiter, _client, clock = make_waiter({1: ["Uploading"]}, policy=policy)
    report = await waiter.wait_all([1])
    assert report[1].kind is OutcomeKind.TIMEOUT
    assert clock.now() == pytest.approx(3600)
    # Capped at 60 s between polls, an hour needs at least 60 polls.
    assert 60 <= report[1].polls <= 3600 / 2


async def test_retry_after_overrides_the_computed_delay() -> None:
    transient = TransientError("busy", http_status=503, retry_after=7.0)
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(50))
    waiter, client, _ = make_waiter({3: [transient, "Done"]}, policy=policy)
    report = await waiter.wait_all([3])
    assert report[3].kind is OutcomeKind.DONE
    assert client.times_for(3) == pytest.approx([0, 7])


async def test_throttled_poll_is_requeued_without_spending_backoff() -> None:
    throttled = ThrottledError("Open api qps request limit reached", code=18)
    policy = PollPolicy(
        min_delay=1, max_delay=1000, timeout=10_000, wait=wait_exponential(multiplier=10)
    )
    waiter, client, _ = make_waiter(
        {4: ["Pending", throttled, throttled, "Pending", "Done"]}, policy=policy
    )
    report = await waiter.wait_all([4])
    times = client.times_for(4)
    # 0: Pending -> +10; two throttles re-poll at once; Pending -> +20 (attempt 2, not 4).
    assert times == pytest.approx([0, 10, 10, 10, 30])
    assert report[4].kind is OutcomeKind.DONE
    assert waiter.stats.throttled == 2


async def test_unknown_id_becomes_error_outcome_and_others_continue() -> None:
    unknown = InvalidRequestError("param invalid", code=500001)
    waiter, _, _ = make_waiter({1: ["Pending", "Done"], 2: [unknown], 3: ["Fail"]})
    report = await waiter.wait_all([1, 2, 3])
    assert [report[i].kind for i in (1, 2, 3)] == [
        OutcomeKind.DONE,
        OutcomeKind.ERROR,
        OutcomeKind.FAILED,
    ]
    assert report[2].error is unknown
    assert not report.ok


async def test_auth_failure_stops_everything_after_one_request() -> None:
    denied = AuthError("SignatureDoesNotMatch", http_status=401)
    waiter, client, _ = make_waiter({i: [denied] for i in range(1, 201)}, max_in_flight=32)
    report = await waiter.wait_all(range(1, 201))
    assert len(client.calls) == 1
    assert len(report.errors) == 200
    assert report.auth_error is denied


async def test_auth_failure_is_logged_once_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    denied = AuthError("SignatureDoesNotMatch", http_status=401)
    waiter, client, _ = make_waiter({i: [denied] for i in range(1, 50)})
    with caplog.at_level("DEBUG", logger="qianfan_export_wait"):
        await waiter.wait_all(range(1, 50))
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert "AKID..." in errors[0].getMessage()
    assert client.credentials.secret_key not in caplog.text


async def test_transient_errors_end_an_export_after_max_unavailable_seconds_not_a_count() -> None:
    flaky = TransientError("HTTP 500", http_status=500)
    policy = PollPolicy(
        min_delay=1, max_delay=5, timeout=10_000, retry_wait=wait_fixed(2), max_unavailable=30
    )
    waiter, client, _ = make_waiter({9: [flaky]}, policy=policy)
    report = await waiter.wait_all([9])
    outcome = report[9]
    assert outcome.kind is OutcomeKind.ERROR
    assert isinstance(outcome.error, ServiceUnavailableError)
    assert outcome.error.last_error is flaky
    assert outcome.unavailable
    # The first error at 0, then every 2 s (the probe of an outage also every 2 s): the
    # export ends at the first answerless poll 30 s after the first error.
    assert client.times_for(9)[-1] == pytest.approx(30)


async def test_an_answer_restarts_the_unavailable_clock() -> None:
    flaky = TransientError("HTTP 500", http_status=500)
    policy = PollPolicy(
        min_delay=1, max_delay=5, timeout=10_000, retry_wait=wait_fixed(2), max_unavailable=5
    )
    answers: list[Answer] = [flaky, flaky, "Pending", flaky, flaky, "Done"]
    waiter, _, _ = make_waiter({9: answers}, policy=policy)
    report = await waiter.wait_all([9])
    assert report[9].kind is OutcomeKind.DONE
    assert report[9].polls == 6


async def test_max_consecutive_errors_is_deprecated_but_still_ends_an_export_on_a_count() -> None:
    flaky = TransientError("HTTP 500", http_status=500)
    with pytest.warns(DeprecationWarning, match="max_consecutive_errors"):
        policy = PollPolicy(min_delay=1, max_delay=5, timeout=10_000, max_consecutive_errors=4)
    waiter, client, _ = make_waiter({9: [flaky]}, policy=policy)
    report = await waiter.wait_all([9])
    assert report[9].kind is OutcomeKind.ERROR
    assert report[9].error is flaky
    assert len(client.calls) == 4


async def test_duplicate_ids_are_polled_once_and_int_and_str_ids_stay_distinct() -> None:
    waiter, client, _ = make_waiter({96: ["Done"], "96": ["Done"], "amemt-x": ["Done"]})
    report = await waiter.wait_all([96, "96", 96, "amemt-x", "96"])
    assert list(report) == [96, "96", "amemt-x"]
    assert sorted(map(repr, (export_id for _, export_id in client.calls))) == sorted(
        ["96", "'96'", "'amemt-x'"]
    )


async def test_invalid_ids_raise_before_any_request() -> None:
    waiter, client, _ = make_waiter({1: ["Done"]})
    with pytest.raises(ConfigurationError, match="True"):
        await waiter.wait_all([1, True, "", None])
    assert client.calls == []


async def test_report_keeps_the_callers_order_and_raises_for_failures() -> None:
    waiter, _, _ = make_waiter({3: ["Done"], 1: ["Fail"], 2: ["Pending", "Done"]})
    report = await waiter.wait_all([3, 1, 2])
    assert list(report) == [3, 1, 2]
    assert [outcome.export_id for outcome in report.done] == [3, 2]
    with pytest.raises(WaitReportError, match="1 failed"):
        report.raise_for_failures()


async def test_on_update_reports_state_changes_and_final_outcomes() -> None:
    events: list[Any] = []
    waiter, _, _ = make_waiter(
        {1: ["Pending", "Pending", "Uploading", "Done"]}, on_update=events.append
    )
    await waiter.wait_all([1])
    changes = [(e.previous, e.state) for e in events if isinstance(e, StateChange)]
    assert changes == [(None, "Pending"), ("Pending", "Uploading")]
    assert events[-1].kind is OutcomeKind.DONE


async def test_a_failing_on_update_hook_does_not_stop_the_wait() -> None:
    def explode(event: object) -> None:
        raise RuntimeError("hook bug")

    waiter, _, _ = make_waiter({1: ["Pending", "Done"]}, on_update=explode)
    report = await waiter.wait_all([1])
    assert report.ok


async def test_unknown_state_is_not_terminal() -> None:
    waiter, client, _ = make_waiter({1: ["Archiving", "Done"]})
    report = await waiter.wait_all([1])
    assert report[1].kind is OutcomeKind.DONE
    assert len(client.calls) == 2


async def test_wait_returns_the_done_status() -> None:
    waiter, _, _ = make_waiter({"amemt-abc": ["Uploading", "Done"]})
    status = await waiter.wait("amemt-abc")
    assert status.state_name == "Done"


async def test_wait_raises_on_fail_and_on_timeout() -> None:
    waiter, _, _ = make_waiter({1: ["Fail"], 2: ["Pending"]})
    with pytest.raises(ExportFailedError) as failed:
        await waiter.wait(1)
    assert failed.value.export_id == 1
    with pytest.raises(ExportTimeoutError, match="Pending"):
        await waiter.wait(2)


async def test_wait_raises_the_error_that_ended_it() -> None:
    unknown = InvalidRequestError("param invalid", code=500001)
    waiter, _, _ = make_waiter({1: [unknown]})
    with pytest.raises(InvalidRequestError):
        await waiter.wait(1)


async def test_max_in_flight_bounds_concurrent_requests() -> None:
    waiter, client, _ = make_waiter({i: ["Done"] for i in range(1, 101)}, max_in_flight=5)
    client.gate = asyncio.Event()
    task = asyncio.ensure_future(waiter.wait_all(range(1, 101)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert client.in_flight == 5
    client.gate.set()
    report = await task
    assert report.ok
    assert client.peak_in_flight == 5


async def test_cancelling_wait_all_cancels_requests_in_flight() -> None:
    waiter, client, _ = make_waiter({i: ["Done"] for i in range(1, 21)}, max_in_flight=4)
    client.gate = asyncio.Event()  # never set: requests hang
    task = asyncio.ensure_future(waiter.wait_all(range(1, 21)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert client.in_flight == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.in_flight == 0
    stats = waiter.stats
    assert (stats.pending, stats.in_flight, stats.callers) == (0, 0, 0)
    assert stats.total == 20 and stats.cancelled == 19  # export 1 proved the key: Done
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []


async def test_breaking_out_of_as_completed_stops_polling() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Done"]}
    script.update({i: ["Pending"] for i in range(2, 50)})
    waiter, client, _ = make_waiter(script)
    stream = waiter.as_completed(range(1, 50))
    async for outcome in stream:
        assert outcome.export_id == 1
        break
    await stream.aclose()  # type: ignore[attr-defined]
    calls = len(client.calls)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(client.calls) == calls
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []


async def test_as_completed_yields_every_outcome_once_in_finishing_order() -> None:
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(10))
    waiter, _, _ = make_waiter(
        {1: ["Pending", "Pending", "Done"], 2: ["Done"], 3: ["Pending", "Fail"]}, policy=policy
    )
    seen = [outcome.export_id async for outcome in waiter.as_completed([1, 2, 3])]
    assert seen == [2, 3, 1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_delay": 0}, "min_delay"),
        ({"min_delay": -1}, "min_delay"),
        ({"max_delay": 1, "min_delay": 2}, "max_delay"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_unavailable": 0}, "max_unavailable"),
        ({"wait": 5}, "wait"),
    ],
)
def test_poll_policy_rejects_bad_values(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PollPolicy(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_in_flight": 0}, "max_in_flight"), ({"qps": 0}, "qps"), ({"qps": -5}, "qps")],
)
def test_waiter_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ExportWaiter(ScriptedClient(VirtualClock(), {}), **options)  # type: ignore[arg-type]


async def test_cancelling_wait_all_always_stops_it_even_as_a_sleep_ends() -> None:
    # asyncio.wait_for (Python < 3.12) can swallow a cancellation that lands as its wait
    # ends; cancelling at many moments around the dispatcher's short sleeps must always
    # stop the run.
    clock = MonotonicClock()
    for attempt in range(300):
        client = ScriptedClient(VirtualClock(), {i: ["Pending"] for i in range(1, 4)})
        waiter = ExportWaiter(
            client,  # type: ignore[arg-type]
            policy=PollPolicy(min_delay=0.001, max_delay=0.002, timeout=60),
            clock=clock,
            limiter=FixedRateLimiter(1e6),
        )
        task = asyncio.ensure_future(waiter.wait_all([1, 2, 3]))
        await asyncio.sleep(0.001 + (attempt % 7) * 0.0003)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done, f"attempt {attempt}: cancellation was lost"
        assert task.cancelled()


async def test_a_large_run_keeps_each_last_status_compactly_and_gives_it_back_whole() -> None:
    ints = list(range(1, 10_001))
    strings = [f"amemt-{n:012d}" for n in range(3)]  # another result shape: exportIDStr too
    script: dict[int | str, list[Answer]] = {i: ["Uploading"] for i in [*ints, *strings]}
    policy = PollPolicy(min_delay=1, max_delay=1, timeout=1.5)
    waiter, _, _ = make_waiter(script, policy=policy)
    report = await waiter.wait_all([*ints, *strings])
    assert len(report.timed_out) == 10_003
    for export_id in (1, 5000, 10_000, *strings):
        status = report[export_id].status
        assert status == make_status(export_id, "Uploading")
        assert status is not None and dict(status.raw) == dict(
            make_status(export_id, "Uploading").raw
        )
        assert status.log_id == "1"


# --- batching wake-ups and the default strategy -----------------------------------------------


class CoarseVirtualClock(VirtualClock):
    """A virtual clock that, like the real one, cannot wake more precisely than 5 ms."""

    granularity = 0.005


class Unlimited:
    """A rate limiter that never delays, so send times show the dispatcher's wake-ups."""

    rate = float("inf")

    def __init__(self) -> None:
        self.tickets = itertools.count(1)

    def reserve(self, now: float) -> Reservation:
        return Reservation(0.0, next(self.tickets))

    def on_success(self, now: float, ticket: int) -> None:
        pass

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        pass


async def test_polls_falling_due_together_share_a_wake_up_and_are_never_sent_early() -> None:
    clock = CoarseVirtualClock()
    script: dict[int | str, list[Answer]] = {i: ["Pending"] * 6 + ["Done"] for i in range(1, 501)}
    client = ScriptedClient(clock, script)
    policy = PollPolicy(min_delay=2, max_delay=4, timeout=1000)
    waiter = ExportWaiter(
        client,  # type: ignore[arg-type]
        policy=policy,
        clock=clock,
        limiter=Unlimited(),
    )
    report = await waiter.wait_all(list(script))
    assert report.ok
    window = 2 / 40  # min_delay / 40: the default schedule's batching window
    for export_id in script:
        gaps = [b - a for a, b in itertools.pairwise(client.times_for(export_id))]
        assert all(2 - 1e-9 <= gap <= 4 + window + 1e-9 for gap in gaps), gaps
    # 3,000 polls over about 20 s of schedule: one wake-up per window at most, not per poll.
    send_times = {round(when, 9) for when, _ in client.calls}
    span = max(send_times) - min(send_times)
    assert len(send_times) <= span / window + 2
    assert len(client.calls) == 3500


@pytest.mark.parametrize(
    ("policy", "granularity", "window"),
    [
        (PollPolicy(), 0.005, 0.05),  # default 2 s: capped at 50 ms
        (PollPolicy(min_delay=0.8, max_delay=5), 0.005, 0.02),  # 1/40 of min_delay
        (PollPolicy(min_delay=0.1, max_delay=1), 0.005, 0.005),  # never under the clock's
        (PollPolicy(wait=wait_fixed(0.05)), 0.005, 0.005),  # a custom schedule: no bound known
        (PollPolicy(), 0.0, 0.0),  # an exact clock batches nothing
    ],
)
def test_batching_window_follows_the_default_schedule_only(
    policy: PollPolicy, granularity: float, window: float
) -> None:
    assert batch_window(policy, granularity) == pytest.approx(window)


@pytest.mark.parametrize(("low", "high"), [(2.0, 60.0), (0.1, 60.0), (0.5, 2.0), (1.0, 1.5)])
def test_default_strategy_draws_as_tenacitys_fixed_plus_random_exponential(
    low: float, high: float
) -> None:
    import random

    from tenacity import RetryCallState, wait_random_exponential

    ours = PollPolicy(min_delay=low, max_delay=high).poll_strategy()
    reference = wait_fixed(low) + wait_random_exponential(multiplier=low, max=high - low)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    for attempt in [*range(1, 40), 1025, 10**6]:
        state.attempt_number = attempt
        random.seed(attempt)
        expected = reference(state)
        random.seed(attempt)
        assert ours(state) == pytest.approx(expected, rel=1e-12)
        assert low <= ours(state) <= high


# --- the budget sweep ---------------------------------------------------------------------------


async def test_a_budget_polls_the_pending_exports_in_turn_at_that_rate() -> None:
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=30, budget=2)
    waiter, client, _ = make_waiter({i: ["Pending"] for i in range(1, 11)}, policy=policy)
    await waiter.wait_all(range(1, 11))
    times = [when for when, _ in client.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap == pytest.approx(0.5) for gap in gaps)  # 2 requests a second, no burst
    order = [export_id for _, export_id in client.calls]
    assert order[:30] == [*range(1, 11)] * 3  # round robin
    assert client.times_for(1)[:3] == pytest.approx([0, 5, 10])  # 10 pending / 2 per s


async def test_the_budget_sweep_speeds_up_as_exports_finish() -> None:
    script: dict[int | str, list[Answer]] = {i: ["Pending"] * i + ["Done"] for i in range(1, 9)}
    policy = PollPolicy(min_delay=0.1, max_delay=60, timeout=100, budget=1)
    waiter, client, _ = make_waiter(script, policy=policy)
    await waiter.wait_all(range(1, 9))
    gaps = [b - a for a, b in itertools.pairwise(client.times_for(8))]
    assert gaps[0] == pytest.approx(8) and gaps[-1] == pytest.approx(1)
    assert gaps == sorted(gaps, reverse=True)


async def test_the_budget_sweep_never_polls_an_export_more_often_than_min_delay() -> None:
    policy = PollPolicy(min_delay=3, max_delay=60, timeout=20, budget=100)
    waiter, client, _ = make_waiter({1: ["Pending"], 2: ["Pending"]}, policy=policy)
    await waiter.wait_all([1, 2])
    gaps = [b - a for a, b in itertools.pairwise(client.times_for(1))]
    assert min(gaps[:-1]) >= 3 - 1e-9  # the last one is the Smithy poll at the deadline


def test_a_budget_and_a_wait_strategy_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="budget"):
        PollPolicy(budget=5, wait=wait_fixed(1))
