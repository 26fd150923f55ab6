"""``qianfan-export-wait worker`` and ``submit`` as processes, against a real
``redis-server`` and the in-process simulator: a worker killed with SIGKILL mid-wait, a
rolling restart, a submitter that dies while another process awaits its ids."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest_asyncio
from hardening_support import ACCESS_KEY, CLI, SECRET_KEY, cli_env, run_cli, unused_port
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis_support import RedisServer

from qianfan_export_wait import Credentials
from qianfan_export_wait._fleet import fleet_key
from qianfan_export_wait.durable._scripts import QueueKeys
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
KEYS = QueueKeys(fleet_key(ACCESS_KEY))
PASSWORD = "durable-pa55-do-not-leak"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(credentials=CREDENTIALS) as running:
        yield running


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


STARTED: list[asyncio.subprocess.Process] = []


@pytest_asyncio.fixture(autouse=True)
async def _kill_leftovers() -> AsyncIterator[None]:
    """No process of a failed test outlives it."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
    )
    STARTED.append(process)
    return process


async def start_worker(
    fake: SimulatedQianfan, server: RedisServer, *, claim_idle: float = 1.0, capacity: int = 25
) -> asyncio.subprocess.Process:
    return await start(
        "worker",
        *("--redis-url", server.url, "--endpoint", fake.base_url, "--qps", "50"),
        *("--min-delay", "0.05", "--max-delay", "0.2"),
        *("--claim-idle", str(claim_idle), "--adopt-every", "0.2", "--capacity", str(capacity)),
    )


async def held_by(redis: Redis) -> dict[str, int]:
    """Each consumer's count of pending ids (names hold the worker's pid)."""
    try:
        summary = await redis.xpending(KEYS.ids, "workers")
    except ResponseError:  # no stream yet
        return {}
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"] or ()}


async def holding(
    redis: Redis, condition: Callable[[dict[str, int]], bool], seconds: float = 30.0
) -> dict[str, int]:
    """The consumers' pending counts, once ``condition`` holds for them (a bound, no figure)."""
    deadline = time.monotonic() + seconds
    while True:
        held = await held_by(redis)
        if condition(held):
            return held
        assert time.monotonic() < deadline, f"never held as expected: {held}"
        await asyncio.sleep(0.05)


def owner_pid(name: str) -> int:
    return int(name.rsplit("-", 2)[-2])


async def finish(process: asyncio.subprocess.Process, timeout: float = 60) -> tuple[str, str]:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return out.decode(), err.decode()


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, err = await finish(process, 30)
    assert process.returncode is not None
    return process.returncode, err


async def test_a_worker_killed_mid_wait_loses_nothing_and_no_outcome_is_written_twice(
    fake: SimulatedQianfan, redis_server: RedisServer, redis: Redis
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(40)]
    workers = [await start_worker(fake, redis_server) for _ in range(2)]
    awaiting = await start(
        "submit", *map(str, ids), "--redis-url", redis_server.url, "--wait", "--timeout", "120"
    )
    held = await holding(redis, lambda held: len(held) == 2 and sum(held.values()) == 40)
    victim = next(w for w in workers if w.pid == owner_pid(max(held, key=held.__getitem__)))
    victim.send_signal(signal.SIGKILL)
    for export_id in ids:
        fake.complete(export_id)
    out, err = await finish(awaiting)
    assert awaiting.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["export_id"] for r in records) == ids
    assert {r["outcome"] for r in records} == {"done"}
    assert await redis.xlen(KEYS.done) == 40  # one notification per outcome written
    survivor = next(w for w in workers if w is not victim)
    code, err = await stop(survivor)
    assert code == 0, err
    assert victim.returncode == -signal.SIGKILL


async def test_a_rolling_restart_hands_every_id_on_and_each_worker_exits_0(
    fake: SimulatedQianfan, redis_server: RedisServer, redis: Redis
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(30)]
    # Claims that would take a minute to expire: only handing back can move the ids.
    old = [await start_worker(fake, redis_server, claim_idle=60.0) for _ in range(2)]
    run = await run_cli("submit", *map(str, ids), "--redis-url", redis_server.url)
    assert run.code == 0, run.stderr
    assert "30 queued" in run.stderr
    await holding(redis, lambda held: sum(held.values()) == 30)
    new = []
    for worker in old:
        code, err = await stop(worker)
        assert code == 0, err
        assert "ids handed back" in err
        new.append(await start_worker(fake, redis_server, claim_idle=60.0))
        await holding(
            redis, lambda held: sum(n for c, n in held.items() if "released" not in c) == 30
        )
    for export_id in ids[:25]:
        fake.complete(export_id)
    for export_id in ids[25:]:
        fake.fail(export_id)
    run = await run_cli("submit", *map(str, ids), "--redis-url", redis_server.url, "--wait")
    assert run.code == 1, run.stderr  # wait's code for a Fail
    assert "0 queued" in run.stderr  # joined or already finished: none queued twice
    kinds = {r["export_id"]: r["outcome"] for r in run.records}
    assert kinds == {**dict.fromkeys(ids[:25], "done"), **dict.fromkeys(ids[25:], "failed")}
    assert await redis.xlen(KEYS.done) == 30
    for worker in new:
        code, err = await stop(worker)
        assert code == 0, err


async def test_a_submitter_killed_while_awaiting_leaves_its_ids_for_another_to_await(
    fake: SimulatedQianfan, redis_server: RedisServer
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(10)]
    first = await start("submit", *map(str, ids), "--redis-url", redis_server.url, "--wait")
    worker = await start_worker(fake, redis_server)
    await asyncio.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    for export_id in ids:
        fake.complete(export_id)
    second = await run_cli(
        "submit", *map(str, ids), "--redis-url", redis_server.url, "--wait", "--timeout", "1"
    )
    assert second.code == 0, second.stderr
    assert sorted(r["export_id"] for r in second.records) == ids  # not timed out: joined
    assert {r["outcome"] for r in second.records} == {"done"}
    await stop(worker)


async def test_submit_wait_exits_2_when_an_export_reaches_its_deadline(
    fake: SimulatedQianfan, redis_server: RedisServer
) -> None:
    late = fake.add_export(finish_after=None).export_id
    worker = await start_worker(fake, redis_server)
    run = await run_cli(
        "submit", str(late), "--redis-url", redis_server.url, "--wait", "--timeout", "0.5"
    )
    assert run.code == 2, run.stderr
    (record,) = run.records
    assert record["outcome"] == "timeout" and record["state"] in ("Pending", "Uploading")
    await stop(worker)


async def test_submit_and_worker_read_the_redis_url_from_the_environment_and_need_one(
    redis_server: RedisServer,
) -> None:
    env = cli_env(QIANFAN_EXPORT_WAIT_REDIS_URL=redis_server.url)
    run = await run_cli("submit", "96", env=env)
    assert run.code == 0, run.stderr
    assert "1 queued" in run.stderr
    for verb in ("submit", "worker"):
        run = await run_cli(verb, "96" if verb == "submit" else "-v")
        assert run.code == 64
        assert "--redis-url" in run.stderr


async def test_submit_refuses_a_bad_id_naming_it_before_anything_is_queued(
    redis_server: RedisServer, redis: Redis
) -> None:
    run = await run_cli("submit", "96", "0096", "--redis-url", redis_server.url)
    assert run.code == 64
    assert "0096" in run.stderr
    assert await redis.exists(KEYS.ids) == 0


async def test_submit_exits_69_naming_the_host_but_not_the_password_when_redis_is_down() -> None:
    port = unused_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    run = await run_cli("submit", "96", "--redis-url", url, "--wait", timeout=40)
    assert run.code == 69
    assert f"127.0.0.1:{port}" in run.stderr and "cannot be reached" in run.stderr
    assert PASSWORD not in run.stderr + run.stdout


async def stderr_until(process: asyncio.subprocess.Process, marker: str) -> list[str]:
    """Read the process's stderr up to the line holding ``marker``."""
    assert process.stderr is not None
    seen: list[str] = []
    while not seen or marker not in seen[-1]:
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line, f"stderr ended before {marker!r}: {seen}"
        seen.append(line.decode())
    return seen


async def test_submit_wait_stopped_by_sigterm_prints_pending_lines_and_leaves_ids_queued(
    fake: SimulatedQianfan, redis_server: RedisServer, redis: Redis
) -> None:
    ids = [fake.add_export(finish_after=None).export_id for _ in range(3)]
    awaiting = await start("submit", *map(str, ids), "--redis-url", redis_server.url, "--wait")
    await stderr_until(awaiting, "submitted 3 ids")
    awaiting.send_signal(signal.SIGTERM)
    out, err = await finish(awaiting, 30)
    assert awaiting.returncode == 143, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["export_id"], r["outcome"]) for r in records] == [(i, "pending") for i in ids]
    assert await redis.hlen(KEYS.jobs) == 3  # still queued for the workers


async def test_submit_wait_stopped_by_sigterm_while_submitting_still_prints_every_line(
    redis_server: RedisServer,
) -> None:
    redis_server.pause()  # the submit hangs in its first call
    try:
        awaiting = await start(
            "submit", "96", "97", "--redis-url", redis_server.url, "--wait", "-v"
        )
        # Logged just before the signal handlers go in, with no await in between.
        await stderr_until(awaiting, "event loop:")
        await asyncio.sleep(0.2)
        awaiting.send_signal(signal.SIGTERM)
        out, err = await finish(awaiting, 30)
    finally:
        redis_server.resume()
    assert awaiting.returncode == 143, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["export_id"], r["outcome"]) for r in records] == [(96, "pending"), (97, "pending")]
