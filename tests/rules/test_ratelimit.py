"""The limiters' arithmetic, driven by a simulated clock and a simulated server limit."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rate_support import WindowServer, max_in_any_second

from qianfan_export_wait.ratelimit import (
    AdaptiveRateLimiter,
    CappedRateLimiter,
    FixedRateLimiter,
    RateLimiter,
)


@given(
    qps=st.integers(min_value=1, max_value=200),
    arrivals=st.lists(
        st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=400
    ),
)
@settings(max_examples=60, deadline=None)
def test_fixed_limiter_never_allows_more_than_qps_in_any_second(
    qps: int, arrivals: list[float]
) -> None:
    limiter = FixedRateLimiter(qps)
    sends = [when + limiter.reserve(when).delay for when in sorted(arrivals)]
    assert max_in_any_second(sends) <= qps


def test_fixed_limiter_spaces_a_burst_evenly() -> None:
    limiter = FixedRateLimiter(4)
    delays = [limiter.reserve(10.0).delay for _ in range(5)]
    assert delays == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_fixed_limiter_holds_sends_for_retry_after() -> None:
    limiter = FixedRateLimiter(100)
    ticket = limiter.reserve(0.0).ticket
    limiter.on_throttle(0.01, ticket, retry_after=3.0)
    assert limiter.reserve(0.02).delay == pytest.approx(2.99)


@pytest.mark.parametrize("qps", [0, -1, float("nan"), True])
def test_fixed_limiter_rejects_a_bad_rate(qps: float) -> None:
    with pytest.raises(ValueError, match="qps"):
        FixedRateLimiter(qps)


def drive(
    limiter: AdaptiveRateLimiter, server: WindowServer, seconds: float, rtt: float = 0.005
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Saturating demand: send whenever the limiter allows; answers arrive ``rtt`` later."""
    now = 0.0
    accepted: list[float] = []
    throttled: list[float] = []
    rates: list[tuple[float, float]] = []
    pending: list[tuple[float, int, bool]] = []
    while now < seconds:
        reservation = limiter.reserve(now)
        now += reservation.delay
        ok = server.admit(now)
        pending.append((now + rtt, reservation.ticket, ok))
        while pending and pending[0][0] <= now:
            answered_at, ticket, was_ok = pending.pop(0)
            if was_ok:
                limiter.on_success(answered_at, ticket)
            else:
                limiter.on_throttle(answered_at, ticket)
        (accepted if ok else throttled).append(now)
        rates.append((now, limiter.rate))
    return accepted, throttled, rates


@pytest.mark.parametrize("limit", [20, 100, 400])
def test_adaptive_limiter_settles_near_an_unknown_limit_with_few_throttles(limit: int) -> None:
    limiter = AdaptiveRateLimiter()
    accepted, throttled, _ = drive(limiter, WindowServer(limit), seconds=60)
    total = len(accepted) + len(throttled)
    assert len(throttled) / total <= 0.05
    settled = [when for when in accepted if when >= 20]
    assert len(settled) / 40 >= 0.85 * limit


def test_adaptive_limiter_grows_exponentially_in_slow_start() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=10)
    _, throttled, rates = drive(limiter, WindowServer(10_000), seconds=1.0)
    assert throttled == []
    assert rates[-1][1] >= 10 * 2**3


def test_adaptive_limiter_cuts_multiplicatively_on_a_throttle() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=50)
    ticket = limiter.reserve(0.0).ticket
    limiter.on_throttle(0.01, ticket)
    assert limiter.rate < 50
    assert limiter.rate == pytest.approx(50 * 0.8 * 0.8, rel=0.01)


def test_adaptive_limiter_cuts_once_for_requests_sent_before_the_cut() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=50)
    tickets = [limiter.reserve(0.0).ticket for _ in range(10)]
    limiter.on_throttle(0.3, tickets[0])
    after_first_cut = limiter.rate
    for ticket in tickets[1:]:
        limiter.on_throttle(0.31, ticket)
    assert limiter.rate == after_first_cut


def test_adaptive_limiter_does_not_grow_while_demand_is_below_the_rate() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=20)
    for second in range(30):
        ticket = limiter.reserve(float(second)).ticket  # one request a second
        limiter.on_success(second + 0.01, ticket)
    assert limiter.rate == 20


def test_adaptive_limiter_recovers_after_a_throttle_with_no_history() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=20)
    ticket = limiter.reserve(0.0).ticket
    limiter.on_throttle(0.01, ticket)  # e.g. another process had used up the account's limit
    accepted, _, _ = drive(limiter, WindowServer(100), seconds=40)
    assert limiter.rate >= 50
    assert len([when for when in accepted if when >= 30]) >= 0.5 * 100 * 10


def test_adaptive_limiter_never_throttled_lets_a_batch_that_fell_due_together_go_at_once() -> None:
    # Polls arriving in batches of 250 every 50 ms (5,000 a second), against a server that
    # never throttles: once slow start has grown, a batch goes out in one wake-up, not
    # spaced over 50 ms (which would wake the event loop every 5 ms for nothing).
    limiter = AdaptiveRateLimiter()
    now = 0.0
    for _ in range(40):
        reservations = [limiter.reserve(now) for _ in range(250)]
        for reservation in reservations:
            limiter.on_success(now + reservation.delay, reservation.ticket)
        now += max(reservation.delay for reservation in reservations) + 0.05
    assert [limiter.reserve(now).delay for _ in range(250)] == [0.0] * 250
    assert limiter.ceiling is None


# -- qps=Q is a ceiling: never above Q, below it while the server throttles ----------------------


@st.composite
def answer_scripts(draw: st.DrawFn) -> list[tuple[float, float, str, float | None]]:
    """Requests (arrival time, answer delay, answer, Retry-After): any mix of successes
    and throttles, with or without Retry-After, answered in any order."""
    return draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0, max_value=6, allow_nan=False),
                st.floats(min_value=0, max_value=2, allow_nan=False),
                st.sampled_from(["ok", "throttle"]),
                st.one_of(st.none(), st.floats(min_value=0, max_value=3, allow_nan=False)),
            ),
            min_size=1,
            max_size=300,
        )
    )


@given(
    qps=st.one_of(
        st.integers(min_value=1, max_value=200),
        st.floats(min_value=0.2, max_value=150, allow_nan=False),
    ),
    script=answer_scripts(),
    knobs=st.fixed_dictionaries(
        {},
        optional={
            "decrease_factor": st.floats(min_value=0.05, max_value=0.95),
            "doubling_period": st.floats(min_value=0.001, max_value=1),
            "probe_share_per_second": st.floats(min_value=0, max_value=5),
            "approach_period": st.floats(min_value=0.001, max_value=2),
        },
    ),
)
@settings(max_examples=150, deadline=None)
def test_capped_limiter_never_sends_more_than_qps_in_any_second_whatever_the_answers(
    qps: float, script: list[tuple[float, float, str, float | None]], knobs: dict[str, float]
) -> None:
    limiter = CappedRateLimiter(qps, **knobs)
    sends: list[float] = []
    answers: list[tuple[float, int, str, float | None]] = []  # (answered at, ticket, ...)
    for arrival, answer_delay, answer, retry_after in sorted(script, key=lambda step: step[0]):
        # Answers that came before this arrival are reported first, in time order.
        answers.sort(key=lambda answer: answer[:2])
        while answers and answers[0][0] <= arrival:
            answered_at, ticket, kind, after = answers.pop(0)
            if kind == "ok":
                limiter.on_success(answered_at, ticket)
            else:
                limiter.on_throttle(answered_at, ticket, after)
        reservation = limiter.reserve(arrival)
        assert reservation.delay >= 0
        sent_at = arrival + reservation.delay
        sends.append(sent_at)
        answers.append((sent_at + answer_delay, reservation.ticket, answer, retry_after))
        assert limiter.rate <= qps
    # Q sends a second for a whole Q; for a fractional one, slots at least 1/Q apart.
    assert max_in_any_second(sends) <= math.ceil(qps)
    ordered = sorted(sends)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    assert min(gaps, default=math.inf) >= 1 / qps * (1 - 1e-9)


def drive_shared(
    limiters: list[RateLimiter], server: WindowServer, seconds: float, rtt: float = 0.02
) -> list[list[tuple[float, bool]]]:
    """Each limiter a process with saturating demand on one account: it sends whenever its
    limiter allows; answers arrive ``rtt`` later. Each process's (sent at, accepted)."""
    sent: list[list[tuple[float, bool]]] = [[] for _ in limiters]
    next_at = [limiter.reserve(0.0).delay for limiter in limiters]
    tickets = [1 for _ in limiters]
    answers: list[tuple[float, int, int, bool]] = []
    while True:
        who = min(range(len(limiters)), key=next_at.__getitem__)
        now = next_at[who]
        if now >= seconds:
            return sent
        answers.sort(key=lambda answer: answer[:3])
        while answers and answers[0][0] <= now:
            answered_at, owner, ticket, ok = answers.pop(0)
            if ok:
                limiters[owner].on_success(answered_at, ticket)
            else:
                limiters[owner].on_throttle(answered_at, ticket)
        ok = server.admit(now)
        sent[who].append((now, ok))
        answers.append((now + rtt, who, tickets[who], ok))
        reservation = limiters[who].reserve(now)
        next_at[who], tickets[who] = now + reservation.delay, reservation.ticket


def throttled_share(sent: list[list[tuple[float, bool]]], since: float) -> float:
    answers = [ok for process in sent for when, ok in process if when >= since]
    return answers.count(False) / len(answers)


def test_two_fixed_limiters_over_the_account_limit_are_throttled_for_the_whole_run() -> None:
    # The defect --qps had: a fixed rate never slows, so two processes at 20/s on a 25/s
    # account have a third of their requests throttled, second after second.
    sent = drive_shared([FixedRateLimiter(20), FixedRateLimiter(20)], WindowServer(25), 30)
    assert throttled_share(sent, since=5) > 0.3


def test_two_capped_limiters_over_the_account_limit_back_off_to_a_few_percent_throttled() -> None:
    sent = drive_shared([CappedRateLimiter(20), CappedRateLimiter(20)], WindowServer(25), 60)
    assert throttled_share(sent, since=5) < 0.05
    accepted_late = sum(ok for process in sent for when, ok in process if when >= 30)
    assert accepted_late / 30 >= 0.85 * 25  # the account is still used, not starved


def test_capped_limiter_returns_to_qps_when_the_throttles_stop() -> None:
    limiter = CappedRateLimiter(20)
    neighbour = FixedRateLimiter(20)
    server = WindowServer(25)
    drive_shared([limiter, neighbour], server, 10)
    assert limiter.rate < 20  # backed off while the neighbour took its share
    # The neighbour stops; the server has room for more than the cap.
    sent = drive_shared([limiter], WindowServer(25), 30)
    assert limiter.rate == 20
    late = [when for when, ok in sent[0] if when >= 20 and ok]
    assert len(late) / 10 == pytest.approx(20, rel=0.05)
    assert max_in_any_second([when for when, _ in sent[0]]) <= 20


def test_capped_limiter_starts_at_qps_without_slow_start() -> None:
    limiter = CappedRateLimiter(8)
    delays = [limiter.reserve(5.0).delay for _ in range(4)]
    assert delays == pytest.approx([0, 0.125, 0.25, 0.375])


def test_capped_limiter_honours_retry_after() -> None:
    limiter = CappedRateLimiter(100)
    ticket = limiter.reserve(0.0).ticket
    limiter.on_throttle(0.01, ticket, retry_after=3.0)
    assert limiter.reserve(0.02).delay == pytest.approx(2.99)


@pytest.mark.parametrize("qps", [0, -1, float("nan"), float("inf"), True, "5"])
def test_capped_limiter_rejects_a_bad_rate(qps: float) -> None:
    with pytest.raises(ValueError, match="qps"):
        CappedRateLimiter(qps)


async def test_two_waiters_at_qps_20_on_a_25_per_second_account_are_rarely_throttled() -> None:
    # Across the wire: two waiters (two processes, as far as the server can tell) each at
    # qps=20 against the simulator's limit of 25/s, with more exports than either may poll.
    # A fixed rate had about 38% of all requests throttled for the whole run.
    from qianfan_export_wait import ExportWaiter, PollPolicy
    from qianfan_export_wait.testing import simulated_qianfan

    policy = PollPolicy(min_delay=0.05, max_delay=0.05, timeout=8)
    async with simulated_qianfan(qps=25, seed=16) as fake:
        ids = [fake.add_export(finish_after=None).export_id for _ in range(200)]
        fake.stats.keep_request_log()
        async with fake.client() as first, fake.client() as second:
            await asyncio.gather(
                ExportWaiter(first, policy=policy, qps=20).wait_all(ids[:100]),
                ExportWaiter(second, policy=policy, qps=20).wait_all(ids[100:]),
            )
        log = fake.stats.request_log
    assert log is not None
    start = log[0][0]
    later = [outcome for when, outcome in log if when >= start + 3]
    throttled = later.count("throttled") / len(later)
    assert throttled < 0.08, f"{throttled:.1%} of {len(later)} requests throttled"
    # Not starved either: the account's limit is still mostly used.
    assert len(later) - later.count("throttled") >= 0.8 * 25 * 4.5
