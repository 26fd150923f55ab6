"""The limiters' arithmetic, driven by a simulated clock and a simulated server limit."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qianfan_export_wait.ratelimit import AdaptiveRateLimiter, FixedRateLimiter


def max_in_any_second(times: list[float]) -> int:
    window: collections.deque[float] = collections.deque()
    most = 0
    for when in sorted(times):
        window.append(when)
        while window[0] <= when - 1.0:
            window.popleft()
        most = max(most, len(window))
    return most


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


class SlidingWindowServer:
    """Accepts at most ``limit`` requests in any one second, like the simulator."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.accepted: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        while self.accepted and self.accepted[0] <= now - 1.0:
            self.accepted.popleft()
        if len(self.accepted) >= self.limit:
            return False
        self.accepted.append(now)
        return True


def drive(
    limiter: AdaptiveRateLimiter, server: SlidingWindowServer, seconds: float, rtt: float = 0.005
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
    accepted, throttled, _ = drive(limiter, SlidingWindowServer(limit), seconds=60)
    total = len(accepted) + len(throttled)
    assert len(throttled) / total <= 0.05
    settled = [when for when in accepted if when >= 20]
    assert len(settled) / 40 >= 0.85 * limit


def test_adaptive_limiter_grows_exponentially_in_slow_start() -> None:
    limiter = AdaptiveRateLimiter(initial_rate=10)
    _, throttled, rates = drive(limiter, SlidingWindowServer(10_000), seconds=1.0)
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
    accepted, _, _ = drive(limiter, SlidingWindowServer(100), seconds=40)
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
