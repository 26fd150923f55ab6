"""The durable queue against a real ``redis-server`` and the in-process simulator: one
outcome per id, written once, read from anywhere; claims renewed, adopted, handed back;
deadlines kept across workers; Redis restarted with and without persistence."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from durable_support import KEY, kill_abruptly, make_queue, running_worker, until
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait.durable import DurableQueue, Worker
from qianfan_export_wait.durable._scripts import QueueKeys, encode_id
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan
from qianfan_export_wait.waiting import ExportWaiter, OutcomeKind

KEYS = QueueKeys(KEY)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan() as running:
        yield running


@pytest_asyncio.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[DurableQueue]:
    async with make_queue(redis_server) as made:
        yield made


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), data_dir=str(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def notifications(queue: DurableQueue) -> list[str]:
    """The ids announced on the notification stream, one per outcome written."""
    entries = await queue.redis.xrange(KEYS.done)
    return [fields[b"id"].decode() for _, fields in entries]


# --- submit -------------------------------------------------------------------------------


async def test_submit_is_idempotent_per_id_and_keeps_the_first_absolute_deadline(
    queue: DurableQueue,
) -> None:
    redis_now = float((await queue.redis.time())[0])
    first = await queue.submit([96, "96"], timeout=100)
    again = await queue.submit([96, 97], timeout=5000)
    assert [(s.export_id, s.status) for s in first] == [(96, "queued"), ("96", "queued")]
    assert [(s.export_id, s.status) for s in again] == [(96, "joined"), (97, "queued")]
    assert again[0].deadline == first[0].deadline  # joining keeps the first deadline
    assert first[0].deadline is not None and again[1].deadline is not None
    assert redis_now + 99 <= first[0].deadline <= redis_now + 102  # absolute, Redis's clock
    assert redis_now + 4999 <= again[1].deadline <= redis_now + 5002
    assert await queue.redis.xlen(KEYS.ids) == 3  # 96 and "96" are two ids; 96 queued once


async def test_submit_without_timeout_has_no_deadline(queue: DurableQueue) -> None:
    (answer,) = await queue.submit(["amemt-x1"], timeout=None)
    assert answer.deadline is None


async def test_bad_ids_and_api_are_refused_naming_the_value_before_anything_is_queued(
    queue: DurableQueue,
) -> None:
    with pytest.raises(ConfigurationError, match="-3"):
        await queue.submit([1, -3])
    with pytest.raises(ConfigurationError, match="'v3'"):
        await queue.submit([1], api="v3")
    assert await queue.redis.exists(KEYS.ids) == 0


async def test_worker_options_are_checked(queue: DurableQueue, fake: SimulatedQianfan) -> None:
    async with fake.client() as client:
        waiter = ExportWaiter(client)
        with pytest.raises(ConfigurationError, match="capacity"):
            Worker(queue, waiter, capacity=0)
        with pytest.raises(ConfigurationError, match="adopt_every"):
            Worker(queue, waiter, claim_idle=1.0, adopt_every=2.0)


# --- outcomes -----------------------------------------------------------------------------


async def test_worker_writes_each_outcome_once_and_another_queue_object_reads_them(
    redis_server: RedisServer, queue: DurableQueue, fake: SimulatedQianfan
) -> None:
    done = [fake.add_export(finish_after=0.2).export_id for _ in range(20)]
    failed = [fake.add_export(finish_after=0.2, fail=True).export_id for _ in range(5)]
    await queue.submit(done + failed, timeout=30)
    async with make_queue(redis_server) as elsewhere, running_worker(redis_server, fake) as worker:
        outcomes = {o.export_id: o async for o in elsewhere.results(done + failed)}
    assert {i: o.kind for i, o in outcomes.items()} == {
        **dict.fromkeys(done, OutcomeKind.DONE),
        **dict.fromkeys(failed, OutcomeKind.FAILED),
    }
    assert outcomes[done[0]].record["state"] == "Done"
    assert outcomes[done[0]].record["export_id"] == done[0]
    assert worker.stats.written == 25
    assert sorted(await notifications(queue)) == sorted(encode_id(i) for i in done + failed)
    assert await queue.redis.xlen(KEYS.ids) == 0  # finished entries leave the stream
    assert await queue.redis.hlen(KEYS.jobs) == 0


async def test_an_outcome_kept_is_returned_at_once_and_submitting_it_again_queues_nothing(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    export_id = fake.add_export(finish_after=0.0).export_id
    await queue.submit([export_id])
    async with running_worker(redis_server, fake):
        await queue.result(export_id)
    requests = fake.stats.total_requests
    assert (await queue.result(export_id)).kind is OutcomeKind.DONE  # no worker running now
    (again,) = await queue.submit([export_id])
    assert again.status == "finished"
    assert fake.stats.total_requests == requests


async def test_result_sees_an_outcome_written_between_its_look_and_its_blocking_read(
    queue: DurableQueue,
) -> None:
    text = encode_id(42)
    await queue.submit([42])
    entry = (await queue.redis.xrange(KEYS.ids))[0][0].decode()
    look = queue._look
    looks = 0

    async def look_then_write(encoded: list[str]) -> dict[str, object]:
        nonlocal looks
        found = await look(encoded)
        looks += 1
        if looks == 1:  # the outcome lands right after the first look found nothing
            payload = '{"record":{"export_id":42,"outcome":"done"},"api":"v1"}'
            assert await queue.finish([(text, entry, payload)]) == [True]
        return found  # type: ignore[return-value]

    queue._look = look_then_write  # type: ignore[method-assign]
    async with asyncio.timeout(10):  # a bound on a hang, not a measurement
        outcome = await queue.result(42)
    assert outcome.kind is OutcomeKind.DONE


async def test_the_first_outcome_written_stands(queue: DurableQueue) -> None:
    await queue.submit([7])
    entry = (await queue.redis.xrange(KEYS.ids))[0][0].decode()
    first = '{"record":{"export_id":7,"outcome":"done"}}'
    second = '{"record":{"export_id":7,"outcome":"timeout"}}'
    assert await queue.finish([(encode_id(7), entry, first)]) == [True]
    assert await queue.finish([(encode_id(7), entry, second)]) == [False]
    assert (await queue.result(7)).kind is OutcomeKind.DONE
    assert await notifications(queue) == [encode_id(7)]
    ttl = await queue.redis.pttl(KEYS.outcome(encode_id(7)))
    assert 0 < ttl <= queue.outcome_ttl * 1000


# --- claims -------------------------------------------------------------------------------


async def test_two_workers_holding_one_id_write_one_outcome_and_the_loser_lets_go(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    export_id = fake.add_export(finish_after=None).export_id
    fake.hold(export_id)
    await queue.submit([export_id])
    async with running_worker(redis_server, fake, claim_idle=1.0, name="a") as first:
        await until(lambda: first.stats.held == 1)
        entry = next(iter(first._held.values())).entry
        # First stalls (as in a long pause): its claim looks idle, the second adopts it.
        for loop in first._loops[:3]:  # claiming, adopting, renewing stop; the waiter polls
            loop.cancel()
        await queue.redis.xclaim(KEYS.ids, "workers", "a", 0, [entry], idle=60_000, justid=True)
        async with running_worker(redis_server, fake, claim_idle=1.0, name="b") as second:
            await until(lambda: second.stats.adopted == 1)
            assert first.stats.held == 1  # both hold it now: at-least-once
            await first._renew(list(first._held))  # the stalled one renews and finds...
            assert first.stats.lost == 1 and first.stats.held == 0  # ...it lost the claim
            fake.complete(export_id)
            outcome = await queue.result(export_id)
    assert outcome.kind is OutcomeKind.DONE and outcome.worker == "b"
    assert first.stats.written + second.stats.written == 1
    assert await notifications(queue) == [encode_id(export_id)]


async def test_a_dead_workers_ids_are_adopted_and_keep_their_original_deadline(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    held = fake.add_export(finish_after=None).export_id
    finishing = fake.add_export(finish_after=None).export_id
    (submitted, _) = await queue.submit([held, finishing], timeout=3.0)
    assert submitted.deadline is not None
    async with running_worker(redis_server, fake, claim_idle=0.5, adopt_every=0.1) as dead:
        await until(lambda: dead.stats.held == 2)
        kill_abruptly(dead)
        async with running_worker(redis_server, fake, claim_idle=0.5, adopt_every=0.1) as heir:
            await until(lambda: heir.stats.adopted == 2)
            fake.complete(finishing)
            assert (await queue.result(finishing)).kind is OutcomeKind.DONE
            outcome = await queue.result(held)
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.worker == heir.name
    written_at = int((await queue.redis.xrange(KEYS.done))[-1][0].split(b"-")[0]) / 1000
    # At the original deadline, not a full timeout after the adoption (that is ~0.6 s on).
    assert written_at < submitted.deadline + 0.5


async def test_an_id_whose_deadline_passed_unclaimed_times_out_without_a_request(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    export_id = fake.add_export(finish_after=None).export_id
    await queue.submit([export_id], timeout=0.05)
    await asyncio.sleep(0.1)
    async with running_worker(redis_server, fake):
        outcome = await queue.result(export_id)
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.record["polls"] == 0
    assert fake.stats.total_requests == 0


async def test_a_draining_worker_hands_its_ids_back_at_once_not_after_the_claim_time(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(30)]
    await queue.submit(ids)
    async with running_worker(redis_server, fake, claim_idle=600.0) as leaving:
        await until(lambda: leaving.stats.held == 30)
    assert leaving.stats.released == 30
    async with running_worker(redis_server, fake, claim_idle=600.0) as staying:
        # Long before a 600 s claim could expire: the ids were handed back.
        await until(lambda: staying.stats.adopted == 30, seconds=20)
        for export_id in ids:
            fake.complete(export_id)
        outcomes = [o async for o in queue.results(ids)]
    assert {o.kind for o in outcomes} == {OutcomeKind.DONE} and len(outcomes) == 30


async def test_a_worker_takes_no_more_than_its_capacity_and_others_take_the_rest(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(10)]
    await queue.submit(ids)
    async with running_worker(redis_server, fake, capacity=4) as small:
        await until(lambda: small.stats.held == 4)
        async with running_worker(redis_server, fake) as big:
            await until(lambda: big.stats.held == 6)
            assert small.stats.held == 4
            for export_id in ids:
                fake.complete(export_id)
            assert len([o async for o in queue.results(ids)]) == 10


# --- Redis restarted ----------------------------------------------------------------------


async def test_redis_restarted_without_persistence_loses_no_id_held_or_awaited(
    redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    held = [fake.add_export(finish_after=None).export_id for _ in range(5)]
    queued = [fake.add_export(finish_after=None).export_id for _ in range(5)]
    async with make_queue(redis_server) as submitter:
        await submitter.submit(held, timeout=60)
        async with running_worker(redis_server, fake, capacity=5, claim_idle=0.6) as worker:
            await until(lambda: worker.stats.held == 5)
            await submitter.submit(queued, timeout=60)  # queued, no worker has room
            awaiting = asyncio.ensure_future(_collect(submitter, held + queued))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(redis_server.restart)  # every key is gone
            # The worker queues its 5 again; the awaiting submitter queues its 10 again.
            await until(lambda: worker.stats.requeued == 5)
            for export_id in held + queued:
                fake.complete(export_id)
            outcomes = await asyncio.wait_for(awaiting, 30)
    assert sorted(outcomes) == sorted(held + queued)
    assert set(outcomes.values()) == {OutcomeKind.DONE}


async def test_redis_restarted_with_persistence_keeps_ids_claims_and_outcomes(
    persistent_redis: RedisServer, fake: SimulatedQianfan
) -> None:
    early = fake.add_export(finish_after=0.0).export_id
    late = [fake.add_export(finish_after=None).export_id for _ in range(5)]
    async with make_queue(persistent_redis) as submitter:
        await submitter.submit([early, *late], timeout=60)
        async with running_worker(persistent_redis, fake, claim_idle=5.0) as worker:
            await submitter.result(early)
            await until(lambda: worker.stats.held == 5)
            await asyncio.to_thread(persistent_redis.restart)
            assert (await submitter.result(early)).kind is OutcomeKind.DONE  # kept
            for export_id in late:
                fake.complete(export_id)
            outcomes = await asyncio.wait_for(_collect(submitter, late), 30)
    assert set(outcomes.values()) == {OutcomeKind.DONE}
    assert worker.stats.requeued == 0 and worker.stats.lost == 0
    assert worker.stats.written == 6


async def _collect(queue: DurableQueue, ids: list[int]) -> dict[int | str, OutcomeKind]:
    return {o.export_id: o.kind async for o in queue.results(ids)}


async def test_submitting_after_redis_forgot_a_finished_id_waits_for_it_again(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    export_id = fake.add_export(finish_after=0.0).export_id
    await queue.submit([export_id])
    async with running_worker(redis_server, fake):
        await queue.result(export_id)
    await queue.redis.flushall()
    (again,) = await queue.submit([export_id])
    assert again.status == "queued"
    async with running_worker(redis_server, fake):
        assert (await queue.result(export_id)).kind is OutcomeKind.DONE


async def test_an_id_travels_with_its_api_to_a_worker_that_has_a_waiter_for_it(
    queue: DurableQueue, redis_server: RedisServer, fake: SimulatedQianfan
) -> None:
    export_id = fake.add_export(finish_after=0.0).export_id
    async with running_worker(redis_server, fake, name="v1-only") as v1_only:
        (answer,) = await queue.submit([export_id], api="v2")
        assert answer.status == "queued"
        await until(lambda: bool(v1_only._refused))  # it saw the id and handed it back
        async with (
            make_queue(redis_server) as own,
            fake.client() as client,
            ExportWaiter(client) as v1,
            ExportWaiter(client) as v2,
            Worker(own, v1, waiters={"v2": v2}, claim_idle=1.0, adopt_every=0.1, name="both"),
        ):
            outcome = await queue.result(export_id)
    assert outcome.api == "v2" and outcome.worker == "both"
    assert v1_only.stats.held == 0 and v1_only.stats.written == 0


# --- where redis is imported --------------------------------------------------------------


def test_importing_the_durable_package_and_the_command_line_does_not_import_redis() -> None:
    code = (
        "import sys, qianfan_export_wait.durable, qianfan_export_wait.cli; "
        "assert not [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_the_fleet_limiter_and_the_durable_package_import_redis() -> None:
    package = Path(__file__).resolve().parents[2] / "qianfan_export_wait"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(name == "redis" or name.startswith("redis.") for name in names):
                importers.add(str(path.relative_to(package)))
    # The fleet limiter may be a module or a package of its own.
    others = {
        path for path in importers if not path.startswith(("redis_limit", "fleet/", "durable/"))
    }
    assert not others
    assert {"durable/queue.py", "durable/worker.py"} <= importers
