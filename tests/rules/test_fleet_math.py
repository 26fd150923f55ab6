"""The fleet limiter's arithmetic without Redis: ``_fleet.FleetModel`` (the specification the
Lua script is held to in test_redis_limit.py), the key, the fallback share, URL masking."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rate_support import WindowServer, max_in_any_second

from qianfan_export_wait._fleet import (
    FleetModel,
    Hint,
    booked_share,
    fallback_rate,
    fixed_interval_us,
    fleet_key,
)
from qianfan_export_wait.redis_limit import mask_url
from qianfan_export_wait.simulator.config import QpsWindowKind

SECOND = 1_000_000.0
EPOCH = 1.7e15  # Redis's clock in microseconds, about now


# --- key, share, masking --------------------------------------------------------------------


def test_fleet_key_is_a_hash_of_the_access_key_never_the_key() -> None:
    access_key = "AKIDfleetACCESSkey0001"
    key = fleet_key(access_key)
    assert access_key not in key
    assert key.startswith("qianfan-export-wait:{") and key.endswith("}")


def test_fleet_key_is_shared_by_one_account_and_differs_between_accounts() -> None:
    assert fleet_key("AK-one") == fleet_key("AK-one")
    assert fleet_key("AK-one") != fleet_key("AK-two")


@pytest.mark.parametrize(("rate", "live", "share"), [(60, 4, 15), (60, 1, 60), (60, 0, 60)])
def test_fallback_rate_is_the_shared_rate_over_the_live_replicas(
    rate: float, live: int, share: float
) -> None:
    assert fallback_rate(rate, live) == share


def test_fallback_rate_is_smaller_when_the_replica_booked_a_smaller_share() -> None:
    # It had not seen the others' heartbeats yet, but its tickets were one in four.
    assert fallback_rate(60, 1, booked_share([1, 5, 9, 13])) == 15


def test_booked_share_is_one_when_it_cannot_tell() -> None:
    assert booked_share([]) == booked_share([7]) == booked_share([9, 3]) == 1.0


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_fallback_rate_rejects_a_rate_that_is_not_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="shared_rate"):
        fallback_rate(rate, 2)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://:pa55word@cache.internal:6379/0", "pa55word"),
        ("redis://fleet-user:pa55word@cache.internal:6379/0", "pa55word"),
        ("rediss://token-only-secret@cache.internal:6380", "token-only-secret"),
        ("unix:///run/redis.sock?db=2&password=pa55word", "pa55word"),
    ],
)
def test_mask_url_hides_every_credential_and_keeps_the_address(url: str, secret: str) -> None:
    masked = mask_url(url)
    assert secret not in masked
    assert "***" in masked
    assert ("cache.internal" in masked) or ("/run/redis.sock" in masked)


def test_importing_the_package_and_the_fleet_module_does_not_import_redis() -> None:
    code = (
        "import sys, qianfan_export_wait, qianfan_export_wait.cli, "
        "qianfan_export_wait.redis_limit; "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- fixed rate -----------------------------------------------------------------------------


@given(
    qps=st.integers(min_value=1, max_value=120),
    calls=st.lists(
        st.tuples(st.integers(0, 3), st.floats(min_value=0, max_value=3, allow_nan=False)),
        min_size=1,
        max_size=300,
    ),
)
@settings(max_examples=60, deadline=None)
def test_replicas_sharing_a_fixed_rate_never_send_more_than_qps_in_any_second(
    qps: int, calls: list[tuple[int, float]]
) -> None:
    model = FleetModel()
    interval = fixed_interval_us(qps)
    sends = []
    for _replica, at in sorted(calls, key=lambda call: call[1]):
        now = EPOCH + at * SECOND
        delay, _ = model.fixed(now, interval)
        sends.append((now + delay - EPOCH) / SECOND)
    assert max_in_any_second(sends) <= qps


def test_fixed_rate_books_a_burst_from_several_replicas_one_interval_apart() -> None:
    model = FleetModel()
    delays = [model.fixed(EPOCH, SECOND / 4)[0] / SECOND for _ in range(5)]
    assert delays == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_fixed_rate_tickets_count_on_from_the_callers_hint_when_the_state_is_new() -> None:
    assert FleetModel().fixed(EPOCH, SECOND, hint_seq=41)[1] == 42


# --- adaptive -------------------------------------------------------------------------------


def drive_fleet(
    model: FleetModel,
    server: WindowServer,
    replicas: int,
    seconds: float,
    rtt: float = 0.005,
) -> tuple[list[float], list[float]]:
    """``replicas`` saturating senders sharing one model: each reserves, sleeps the delay,
    sends; answers come ``rtt`` later and are reported (successes with the next reservation,
    throttles at once, as the limiter does)."""
    clock = [0.0] * replicas  # when each replica next asks
    successes = [0] * replicas
    answers: list[tuple[float, int, int, bool]] = []  # (at, replica, ticket, ok)
    accepted: list[float] = []
    throttled: list[float] = []
    while min(clock) < seconds:
        replica = clock.index(min(clock))
        now = clock[replica]
        answers.sort()
        while answers and answers[0][0] <= now:
            at, owner, ticket, ok = answers.pop(0)
            if ok:
                successes[owner] += 1
            else:
                model.throttle(EPOCH + at * SECOND, 1, ticket)
        delay, ticket, _, _ = model.adaptive(EPOCH + now * SECOND, successes[replica])
        successes[replica] = 0
        send_at = now + delay / SECOND
        ok = server.admit(send_at)
        (accepted if ok else throttled).append(send_at)
        answers.append((send_at + rtt, replica, ticket, ok))
        clock[replica] = send_at
    return accepted, throttled


@pytest.mark.parametrize("kind", ["sliding", "fixed"])
@pytest.mark.parametrize("limit", [20, 60, 200])
def test_four_replicas_share_one_adaptive_rate_near_an_unknown_limit(
    limit: int, kind: QpsWindowKind
) -> None:
    model = FleetModel()
    accepted, throttled = drive_fleet(model, WindowServer(limit, kind), replicas=4, seconds=60)
    late_throttled = [when for when in throttled if when >= 5]
    late_accepted = [when for when in accepted if when >= 5]
    assert len(late_throttled) / (len(late_throttled) + len(late_accepted)) <= 0.01
    settled = [when for when in accepted if when >= 10]
    assert len(settled) / 50 >= 0.85 * limit


def test_a_throttle_reported_by_one_replica_lowers_the_rate_every_replica_books_at() -> None:
    model = FleetModel()
    now = EPOCH
    for _ in range(200):  # slow start, all successes
        delay, ticket, rate_before, _ = model.adaptive(now, 1)
        now += delay + 1
    model.throttle(now, 1, ticket)
    _, _, rate_seen_by_another, ceiling = model.adaptive(now + 1, 0)
    assert rate_seen_by_another < rate_before
    assert ceiling is not None


def test_throttles_of_one_batch_cut_the_shared_rate_once() -> None:
    model = FleetModel()
    tickets = [model.adaptive(EPOCH, 0)[1] for _ in range(10)]
    first = model.throttle(EPOCH + 1000, 1, tickets[0])
    later = [model.throttle(EPOCH + 2000, 1, ticket) for ticket in tickets[1:]]
    assert {rate for rate, _ in later} == {first[0]}


def test_a_request_booked_after_a_cut_and_still_throttled_holds_all_a_second_past_the_cut() -> None:
    model = FleetModel()
    first = model.adaptive(EPOCH, 0)[1]
    model.throttle(EPOCH + 10_000, 1, first)  # the cut
    after_cut = model.adaptive(EPOCH + 20_000, 0)[1]
    model.throttle(EPOCH + 30_000, 1, after_cut)  # the window is still full
    delay = model.adaptive(EPOCH + 40_000, 0)[0]
    assert EPOCH + 40_000 + delay >= EPOCH + 10_000 + SECOND


def test_the_shared_rate_does_not_grow_without_reported_successes() -> None:
    model = FleetModel()
    now = EPOCH
    for _ in range(100):
        delay, _, rate, _ = model.adaptive(now, 0)
        now += delay
    assert rate == 20.0


def test_lost_state_is_rebuilt_from_the_callers_view_not_from_slow_start() -> None:
    model = FleetModel()
    model.fields.clear()  # FLUSHALL, or a restart without persistence
    _, ticket, rate, ceiling = model.adaptive(EPOCH, 1, Hint(rate=57.0, ceiling=60.0, seq=900))
    assert (rate, ceiling, ticket) == (57.0, 60.0, 901)


def test_a_fixed_rate_throttle_with_retry_after_holds_every_replica() -> None:
    model = FleetModel()
    interval = SECOND / 10
    _, ticket = model.fixed(EPOCH, interval)
    model.throttle(EPOCH + 1000, 1, ticket, retry_after=2 * SECOND, adaptive=False)
    delay, _ = model.fixed(EPOCH + 2000, interval)
    assert delay == pytest.approx(2 * SECOND - 1000)
