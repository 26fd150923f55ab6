"""``RedisRateLimiter`` against a real ``redis-server`` (tests/support/redis_support.py): the script
matches its Python model, replicas share one limit, and Redis's faults cost no crash, no
burst and no leaked credential."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from hardening_support import unused_port
from redis.asyncio import Redis
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait._fleet import FLEET_SCRIPT, AdaptiveParams, FleetModel, Hint
from qianfan_export_wait.errors import ClientClosedError, ConfigurationError
from qianfan_export_wait.redis_limit import (
    FleetAuthError,
    FleetUnreachableError,
    RedisRateLimiter,
    limiter_from_url,
)

EPOCH = 1.7e15
PASSWORD = "fleet-pa55-do-not-leak"


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def limiter(server: RedisServer, **options: object) -> RedisRateLimiter:
    options.setdefault("key", "fleet-test")
    return limiter_from_url(server.url, **options)  # type: ignore[arg-type]


async def wait_until(condition: object, seconds: float = 10.0) -> None:
    """Poll ``condition()`` until true; fail after ``seconds`` (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- the script is its model ----------------------------------------------------------------


async def test_script_keeps_the_same_state_and_answers_as_its_python_model(
    redis_client: Redis,
) -> None:
    script = redis_client.register_script(FLEET_SCRIPT)
    keys = ["model:limiter", "model:replicas"]
    params = AdaptiveParams()
    model = FleetModel(params)
    rng = random.Random(11)
    now = EPOCH
    ticket = 0
    for step in range(400):
        now += rng.choice([0.0, 300.0, 5_000.0, 40_000.0, 700_000.0])
        if step in (150, 300):
            await redis_client.flushall()
            model.fields.clear()
        hint = Hint(rate=33.5, ceiling=40.0 if step > 150 else None, seq=ticket)
        if rng.random() < 0.15 and ticket:
            count, retry_after = rng.randint(1, 3), rng.choice([0.0, 0.0, 250_000.0])
            expected = model.throttle(now, count, ticket, retry_after, hint=hint)
            reply = await script(
                keys=keys,
                args=[
                    "throttle",
                    repr(now),
                    "60000",
                    *hint.args(),
                    repr(params.initial_rate),
                    repr(params.min_rate),
                    repr(params.decrease_factor),
                    "adaptive",
                    str(count),
                    str(ticket),
                    str(round(retry_after)),
                ],
            )
            assert float(reply[2]) == expected[0]
        else:
            successes = rng.randint(0, 2)
            delay, ticket, rate, ceiling = model.adaptive(now, successes, hint)
            reply = await script(
                keys=keys,
                args=[
                    "adaptive",
                    repr(now),
                    "60000",
                    *hint.args(),
                    *params.grow_args(),
                    str(successes),
                ],
            )
            assert (float(reply[0]), int(reply[1]), float(reply[2])) == (delay, ticket, rate)
            assert (float(reply[3]) if reply[3] else None) == ceiling
        stored = await redis_client.hgetall(keys[0])
        assert {name.decode(): float(value) for name, value in stored.items()} == model.fields


async def test_fixed_script_books_slots_like_its_python_model(redis_client: Redis) -> None:
    script = redis_client.register_script(FLEET_SCRIPT)
    model = FleetModel()
    now = EPOCH
    for gap in [0.0, 0.0, 10.0, 90_000.0, 0.0, 2_000_000.0, 5.0]:
        now += gap
        delay, ticket = model.fixed(now, 100_000.0, hint_seq=7)
        reply = await script(
            keys=["m:limiter", "m:replicas"], args=["fixed", repr(now), "60000", "100000.0", "7"]
        )
        assert (float(reply[0]), int(reply[1])) == (delay, ticket)


# --- sharing --------------------------------------------------------------------------------


async def test_two_replicas_at_a_fixed_rate_get_consecutive_slots_of_one_schedule(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, qps=2) as first, limiter(redis_server, qps=2) as second:
        delays = []
        for replica in (first, second, first, second):
            delays.append((await replica.areserve(0.0)).delay)
    # Booked back to back within milliseconds: slots 0, 0.5, 1.0 and 1.5 s ahead.
    assert delays == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.2)


async def test_tickets_come_from_one_sequence_for_the_whole_fleet(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server) as first, limiter(redis_server) as second:
        tickets = [(await replica.areserve(0.0)).ticket for replica in (first, second, first)]
    assert tickets == [1, 2, 3]


async def test_a_throttle_seen_by_one_replica_lowers_the_rate_of_another(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server) as first, limiter(redis_server) as second:
        for _ in range(20):
            reservation = await first.areserve(0.0)
            await asyncio.sleep(reservation.delay)
            first.on_success(0.0, reservation.ticket)
        grown = first.rate
        first.on_throttle(0.0, reservation.ticket)
        await wait_until(lambda: first.rate < grown)
        await second.areserve(0.0)  # the second never saw a throttle itself
        assert second.rate < grown


async def test_live_replicas_count_every_heartbeat_and_forget_a_replica_that_left(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, heartbeat_interval=0.05, replica_ttl=0.5) as staying:
        async with limiter(redis_server) as leaving:
            await wait_until(lambda: staying.live_replicas == 2)
            assert leaving.live_replicas >= 1
        await wait_until(lambda: staying.live_replicas == 1)


async def test_a_replica_that_stops_beating_stops_counting_after_its_ttl(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, heartbeat_interval=0.05, replica_ttl=0.3) as staying:
        silent = limiter(redis_server, replica_ttl=0.3)
        await silent.__aenter__()
        await wait_until(lambda: staying.live_replicas == 2)
        for task in silent._tasks:  # as a kill -9 would: no goodbye, no more heartbeats
            task.cancel()
        await wait_until(lambda: staying.live_replicas == 1)
        silent._closed = True
        await silent._redis.aclose()


# --- faults ---------------------------------------------------------------------------------


async def test_flushall_mid_run_is_survived_and_the_schedule_goes_on_without_a_burst(
    redis_server: RedisServer, redis_client: Redis
) -> None:
    async with limiter(redis_server, qps=4, heartbeat_interval=0.05) as replica:
        before = [(await replica.areserve(0.0)).delay for _ in range(3)]
        await asyncio.sleep(0.2)  # past the caution that follows the fleet's first call
        await redis_client.flushall()
        await redis_client.script_flush()
        after = (await replica.areserve(0.0)).delay
        assert replica.shared
    assert before == pytest.approx([0.0, 0.25, 0.5], abs=0.1)
    # Redis's schedule is gone with the keys; the replica keeps to its own (no burst).
    assert after == pytest.approx(0.75, abs=0.1)


async def test_adaptive_state_lost_with_a_restart_comes_back_at_the_last_shared_rate(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, heartbeat_interval=0.05) as replica:
        for _ in range(30):
            reservation = await replica.areserve(0.0)
            await asyncio.sleep(reservation.delay)
            replica.on_success(0.0, reservation.ticket)
        replica.on_throttle(0.0, reservation.ticket)
        await wait_until(lambda: replica._hint.ceiling is not None)
        rate, ceiling = replica.rate, replica._hint.ceiling
        redis_server.restart()
        await wait_until(lambda: replica.shared and replica.live_replicas == 1)
        await replica.areserve(0.0)
        assert replica.shared
        assert replica.rate == pytest.approx(rate, rel=0.2)
        assert replica._hint.ceiling == ceiling


async def test_unreachable_redis_falls_back_to_a_share_of_the_rate_and_warns_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qianfan_export_wait")
    async with limiter(redis_server, qps=10, heartbeat_interval=0.05) as replica:
        async with limiter(redis_server, qps=10):
            await wait_until(lambda: replica.live_replicas == 2)
            redis_server.stop()
            for _ in range(5):
                await replica.areserve(0.0)
            assert not replica.shared
            assert replica.rate == 5.0
            warnings = [r for r in caplog.records if "did not answer" in r.getMessage()]
            assert len(warnings) == 1
            redis_server.start()
            await wait_until(lambda: replica.shared)
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert replica.fallbacks == 1


async def test_a_hung_redis_costs_one_timeout_then_the_fallback_answers_at_once(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, qps=10, timeout=0.2) as replica:
        redis_server.pause()
        try:
            started = time.monotonic()
            await replica.areserve(0.0)
            first = time.monotonic() - started
            started = time.monotonic()
            await replica.areserve(0.0)
            second = time.monotonic() - started
        finally:
            redis_server.resume()
    assert not replica.shared or replica.fallbacks == 1
    assert first < 2.0  # one 0.2 s timeout; 2 s leaves room for a loaded machine
    assert second < 0.05  # no Redis call at all in the fallback


async def test_a_fallback_starts_after_the_slot_last_booked_on_redis(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, qps=10) as replica:
        assert (await replica.areserve(0.0)).delay == pytest.approx(0.0, abs=0.05)
        redis_server.stop()
        fallback = await replica.areserve(0.0)
    assert fallback.ticket < 0
    assert fallback.delay == pytest.approx(0.1)  # not a second send at 0.0


async def test_back_from_a_fallback_a_replica_keeps_to_its_local_share_for_a_while(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server, qps=10, heartbeat_interval=0.05) as replica:
        async with limiter(redis_server, qps=10):
            await wait_until(lambda: replica.live_replicas == 2)
            redis_server.stop()
            await replica.areserve(0.0)
            redis_server.start()
            await wait_until(lambda: replica.shared)
            delays = [(await replica.areserve(10.0)).delay for _ in range(3)]
    # The fleet's schedule alone would allow 0, 0.1, 0.2; the local share is 5/s.
    assert delays == pytest.approx([0.0, 0.2, 0.4], abs=0.05)


async def test_throttles_during_a_fallback_slow_the_local_limiter(
    redis_server: RedisServer,
) -> None:
    async with limiter(redis_server) as replica:
        redis_server.stop()
        reservation = await replica.areserve(0.0)
        assert reservation.ticket < 0
        rate = replica.rate
        replica.on_throttle(0.1, reservation.ticket)
        assert replica.rate < rate


# --- configuration and secrets --------------------------------------------------------------


async def test_credentials_in_the_url_never_reach_logs_errors_or_repr(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qianfan_export_wait")
    url = f"redis://fleet-user:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    replica = limiter_from_url(url, key="k", qps=5, timeout=0.2)
    shown = repr(replica)
    with pytest.raises(FleetAuthError) as refused:
        await replica.__aenter__()
    assert PASSWORD not in shown and "fleet-user" not in shown
    assert PASSWORD not in str(refused.value) and "fleet-user" not in str(refused.value)
    assert PASSWORD not in caplog.text
    with pytest.raises(ConfigurationError) as error:
        limiter_from_url(f"http://:{PASSWORD}@127.0.0.1/0", key="k")
    assert PASSWORD not in str(error.value)


# --- fail fast at start; closed means closed ---------------------------------------------------


async def test_an_unreachable_redis_at_start_is_an_error_naming_the_host_not_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = unused_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    with pytest.raises(FleetUnreachableError) as entered:
        async with limiter_from_url(url, key="k", qps=5, timeout=0.2):
            pass
    assert f"127.0.0.1:{port}" in str(entered.value)
    assert PASSWORD not in str(entered.value) and PASSWORD not in caplog.text
    # Used without ``async with``, the first reservation joins the fleet, and fails the same.
    replica = limiter_from_url(url, key="k", timeout=0.2)
    try:
        with pytest.raises(FleetUnreachableError, match=f"127.0.0.1:{port}"):
            await replica.areserve(0.0)
        assert replica.fallbacks == 0  # no silent fallback at start
    finally:
        await replica.aclose()


@pytest.fixture
def password_redis() -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_password(server: RedisServer, password: str | None) -> str:
    auth = "" if password is None else f":{password}@"
    return f"redis://{auth}127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("password", ["not-the-" + PASSWORD, None])
async def test_a_wrong_or_missing_redis_password_at_start_is_an_auth_error(
    password_redis: RedisServer, password: str | None
) -> None:
    url = with_password(password_redis, password)
    with pytest.raises(FleetAuthError, match=f"127.0.0.1:{password_redis.port}") as refused:
        async with limiter_from_url(url, key="k", qps=5):
            pass
    assert PASSWORD not in str(refused.value)
    async with limiter_from_url(with_password(password_redis, PASSWORD), key="k") as replica:
        assert replica.shared  # the right password joins the fleet
        await replica.areserve(0.0)
        assert replica.fallbacks == 0


async def test_a_redis_going_away_mid_run_still_falls_back(redis_server: RedisServer) -> None:
    async with limiter(redis_server, qps=10) as replica:
        redis_server.stop()
        reservation = await replica.areserve(0.0)
    assert reservation.ticket < 0 and replica.fallbacks == 1


async def test_a_closed_limiter_refuses_to_be_used(redis_server: RedisServer) -> None:
    replica = limiter(redis_server, qps=10)
    async with replica:
        await replica.areserve(0.0)
    with pytest.raises(ClientClosedError, match="closed"):
        await replica.areserve(0.0)
    with pytest.raises(ClientClosedError, match="closed"):
        await replica.__aenter__()
    assert replica._tasks == []  # and nothing was started again
    replica.on_success(1.0, 1)  # an answer that lands after the close is ignored
    replica.on_throttle(1.0, 2)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", ""])
def test_limiter_from_url_accepts_only_redis_schemes(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"redis://, rediss:// or unix://"):
        limiter_from_url(url, key="k")


def test_limiter_from_url_needs_an_access_key_or_a_key() -> None:
    with pytest.raises(ConfigurationError, match="access_key or key"):
        limiter_from_url("redis://127.0.0.1:6379/0")


def test_a_missing_redis_package_is_a_configuration_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'qianfan-export-wait\[redis\]'"):
        limiter_from_url("redis://127.0.0.1:6379/0", key="k")


async def test_closing_stops_every_background_task(redis_server: RedisServer) -> None:
    replica = limiter(redis_server)
    await replica.areserve(0.0)
    replica.on_throttle(0.0, 1)
    tasks = list(replica._tasks)
    await replica.aclose()
    assert tasks and all(task.done() for task in tasks)


class _LosesCancellations:
    """A Redis client whose script calls lose a cancellation, as redis-py can when the
    cancellation lands while it closes a connection on a timeout of its own: the call
    then ends in a timeout error (``raises``) or in a reply, as if nothing had happened."""

    def __init__(self, raises: bool) -> None:
        self.raises = raises
        self.calls = 0

    def register_script(self, script: str) -> object:
        async def call(keys: list[str], args: list[str]) -> list[object]:
            self.calls += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if self.raises:
                    from redis.exceptions import TimeoutError as RedisTimeout

                    raise RedisTimeout("Timed out closing connection") from None
            return [1, ""]  # a heartbeat's reply: one live replica, no shared rate yet

        return call


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is 3.11+")
@pytest.mark.parametrize("raises", [False, True], ids=["reply", "timeout-error"])
async def test_a_cancellation_lost_inside_a_redis_call_still_ends_the_heartbeat(
    raises: bool,
) -> None:
    client = _LosesCancellations(raises)
    replica = RedisRateLimiter(client, key="k", heartbeat_interval=0.001)  # type: ignore[arg-type]
    replica._start()
    await wait_until(lambda: client.calls >= 3)
    heartbeat = replica._tasks[0]
    started = time.monotonic()
    heartbeat.cancel()
    await asyncio.wait({heartbeat}, timeout=2.0)
    assert heartbeat.cancelled(), "the heartbeat ran on after its cancellation was lost"
    await asyncio.wait_for(replica.aclose(), 5.0)
    assert time.monotonic() - started < 5.0
