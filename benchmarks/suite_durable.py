"""``durable``: waits kept on Redis Streams (#19): workers as processes, the simulator in
its own process, a ``redis-server`` of the suite's own (persistence off).

Cases:

* ``throughput``: N exports already Done (``--durable-ids``; 2,000 with ``--quick``,
  10,000 otherwise; 100,000 on request), two ``qianfan-export-wait worker`` processes,
  this process submits them all and awaits every outcome (``DurableQueue.results``).
  Reported: outcomes per second from the first submit to the last outcome, and Redis
  round trips per export (commands clients sent, ``INFO commandstats``: submits, claims,
  renewals, adoptions, outcome writes, the awaiter's reads, and the workers' fleet rate
  limit, one reservation per status request; ``queue_round_trips_per_export`` leaves
  those reservations out).
* ``adoption`` and its ``baseline``: exports that stay Pending until the suite completes
  them; workers A and B hold half each (``--capacity``), worker C idles. In ``adoption``
  A gets ``kill -9`` and C adopts its ids after ``--claim-idle`` (3 s, adopting every
  0.5 s). Reported: seconds from the kill to each of A's ids being polled again (the
  simulator's first answer after the kill), status requests per export in both runs,
  and the extra requests per adopted id.
"""

from __future__ import annotations

import asyncio
import math
import signal
import statistics
import sys
import time
from typing import Any

from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS

from .common import SuiteResult, Target, sim_env
from .simserver import REPO_ROOT, SimProcess
from .suite_fleet import RedisProcess, redis_server_or_skip

KEY_ACCESS = SIMULATOR_CREDENTIALS.access_key  # the workers' account: one queue
CLAIM_IDLE = 3.0
ADOPT_EVERY = 0.5
# Commands clients send. What scripts run inside them (TIME, XADD, SET...) is counted under
# its own name too, so those names are left out.
_CLIENT_COMMANDS = (
    "evalsha",
    "eval",
    "script|load",
    "xreadgroup",
    "xautoclaim",
    "xread",
    "xrevrange",
    "xrange",
    "mget",
    "ping",
    "hello",
    "client|setinfo",
    "select",
)


async def _start_worker(url: str, env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qianfan_export_wait",
        "worker",
        *("--redis-url", url, "--qps", "5000", "--min-delay", "0.2", "--max-delay", "1"),
        *("--max-in-flight", "64", "--claim-idle", str(CLAIM_IDLE)),
        *("--adopt-every", str(ADOPT_EVERY)),
        *extra,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _consumers(redis: Any, stream: str) -> dict[str, int]:
    from redis.exceptions import ResponseError

    try:
        rows = await redis.xinfo_consumers(stream, "workers")
    except ResponseError:
        return {}
    return {row["name"].decode(): int(row["pending"]) for row in rows}


async def _until(check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the durable suite's workers never got ready")
        await asyncio.sleep(0.05)


async def _client_commands(redis: Any) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(entry["calls"])
        for name, entry in stats.items()
        if name.removeprefix("cmdstat_") in _CLIENT_COMMANDS
    }


async def _throughput(sim: SimProcess, redis_url: str, n: int) -> dict[str, Any]:
    from qianfan_export_wait.durable import queue_from_url

    ids = await sim.add(n, max_seconds=0.001, fail_ratio=0.0, seed=1)
    env = sim_env(sim.base_url)
    workers = [await _start_worker(redis_url, env, "--capacity", "5000") for _ in range(2)]
    async with queue_from_url(redis_url, access_key=KEY_ACCESS, block=1.0) as queue:
        redis = queue.redis
        try:
            # Both workers have joined once a first id each has gone through them.
            warm = await sim.add(20, max_seconds=0.001, fail_ratio=0.0, seed=2)
            await queue.submit(warm)
            await _until(lambda: _count_consumers(redis, queue.keys.ids, 2))
            _ = [o async for o in queue.results(warm)]
            await redis.config_resetstat()
            requests_before = (await sim.stats())["total_requests"]
            started = time.monotonic()
            await queue.submit(ids, timeout=3600)
            submitted = time.monotonic()
            kinds: dict[str, int] = {}
            async for outcome in queue.results(ids):
                kinds[outcome.kind.value] = kinds.get(outcome.kind.value, 0) + 1
            ended = time.monotonic()
            commands = await _client_commands(redis)
            requests = (await sim.stats())["total_requests"] - requests_before
        finally:
            await _stop(workers)
        await redis.flushall()
    total = sum(commands.values())
    return {
        "ids": n,
        "workers": 2,
        "submit_s": round(submitted - started, 3),
        "submit_to_last_outcome_s": round(ended - started, 3),
        "outcomes_per_s": round(n / (ended - started), 1),
        "outcomes": kinds,
        "status_requests_per_export": round(requests / n, 3),
        "redis_round_trips_per_export": round(total / n, 3),
        # The workers' fleet limiter books one slot (one EVALSHA) per status request.
        "queue_round_trips_per_export": round((total - requests) / n, 3),
        "round_trips_by_command": commands,
    }


async def _count_consumers(redis: Any, stream: str, count: int) -> bool:
    """Whether ``count`` workers are claiming (blocked in XREADGROUP or holding ids:
    Redis 7.0 lists a consumer only once something was delivered to it)."""
    clients = await redis.client_list()
    reading = sum(1 for client in clients if client.get("cmd") == "xreadgroup")
    held = len(await _consumers(redis, stream)) if stream else 0
    return max(reading, held) >= count


async def _adoption(sim: SimProcess, redis_url: str, n: int, *, kill: bool) -> dict[str, Any]:
    from qianfan_export_wait.durable import queue_from_url

    ids = await sim.add(n, max_seconds=1.0, fail_ratio=0.0, seed=3, held=True)
    env = sim_env(sim.base_url)
    half = str(n // 2)
    holders = [await _start_worker(redis_url, env, "--capacity", half) for _ in range(2)]
    async with queue_from_url(redis_url, access_key=KEY_ACCESS, block=1.0) as queue:
        redis = queue.redis
        spare: list[asyncio.subprocess.Process] = []
        try:
            await queue.submit(ids, timeout=3600)

            async def both_full() -> bool:
                held = await _consumers(redis, queue.keys.ids)
                return sorted(held.values()) == [n // 2, n // 2]

            await _until(both_full)
            spare.append(await _start_worker(redis_url, env, "--capacity", str(n)))
            # A and B are full (they claim no more); C is the one blocked in XREADGROUP.
            await _until(lambda: _count_consumers(redis, "", 1))
            await asyncio.sleep(1.0)
            await sim.reset()
            victim_ids: list[int] = []
            killed_at = time.monotonic()
            if kill:
                held = await _consumers(redis, queue.keys.ids)
                victim_name = next(
                    name for name in held if name.split("-")[-2] == str(holders[0].pid)
                )
                pending = await redis.xpending_range(
                    queue.keys.ids, "workers", "-", "+", n, consumername=victim_name
                )
                for row in pending:
                    entry = await redis.xrange(queue.keys.ids, row["message_id"], row["message_id"])
                    victim_ids.append(int(entry[0][1][b"id"]))
                killed_at = time.monotonic()
                holders[0].send_signal(signal.SIGKILL)
                await holders[0].wait()
            await asyncio.sleep(CLAIM_IDLE + ADOPT_EVERY + 3.0)
            lags: list[float] = []
            if kill:
                answers = await sim.first_answers(victim_ids)
                lags = [when - killed_at for when in answers.values() if when is not None]
            await sim.complete(ids)
            _ = [o async for o in queue.results(ids)]
            stats = await sim.stats()
        finally:
            await _stop(holders + spare)
        await redis.flushall()
    figures: dict[str, Any] = {
        "ids": n,
        "status_requests": stats["total_requests"],
        "requests_per_export": round(stats["total_requests"] / n, 3),
    }
    if kill:
        figures.update(
            {
                "adopted_ids": len(victim_ids),
                "repolled_ids": len(lags),
                "death_to_repoll_median_s": round(statistics.median(lags), 2) if lags else math.nan,
                "death_to_repoll_max_s": round(max(lags), 2) if lags else math.nan,
            }
        )
    return figures


async def run(quick: bool, ids: int | None = None) -> SuiteResult:
    """Run the suite (``ids``: the throughput case's size)."""
    result = SuiteResult("durable")
    binary = redis_server_or_skip(result)
    if binary is None:
        return result
    n = ids or (2000 if quick else 10_000)
    adopt_n = 100 if quick else 400
    redis = RedisProcess(binary)
    await redis.start()
    try:
        async with SimProcess() as sim:
            result.metrics["throughput"] = await _throughput(sim, redis.url, n)
            baseline = await _adoption(sim, redis.url, adopt_n, kill=False)
            adoption = await _adoption(sim, redis.url, adopt_n, kill=True)
    finally:
        await redis.stop()
    adoption["extra_requests_per_adopted_id"] = round(
        (adoption["status_requests"] - baseline["status_requests"])
        / max(adoption["adopted_ids"], 1),
        3,
    )
    result.metrics["baseline"] = baseline
    result.metrics["adoption"] = adoption
    bound = CLAIM_IDLE + ADOPT_EVERY + 1.0
    result.targets.append(
        Target("death to re-poll (max)", adoption["death_to_repoll_max_s"], bound, "s")
    )
    result.targets.append(
        Target(
            "adopted ids polled again", adoption["repolled_ids"], adoption["adopted_ids"], "", ">="
        )
    )
    result.notes.append(
        f"claim_idle {CLAIM_IDLE:g} s, adopt_every {ADOPT_EVERY:g} s: a dead worker's ids "
        f"are due for adoption {CLAIM_IDLE:g} s after its last renewal (renewals every "
        f"{CLAIM_IDLE / 3:g} s)"
    )
    return result
