"""``fleet``: four processes of one account share one rate limit through one Redis (#11).

The simulator (its own process, a fixed-window limit of 60 requests per second, the
request log on) and a ``redis-server`` of the suite's own (a free port, persistence off)
serve every case; each case adds fresh exports for each process. Cases:

* ``known``: four ``qianfan-export-wait wait --ids-file F --qps 55 --redis-url URL``
  processes. Targets: no throttled answer; together at least 90% of 55/s while all four
  are busy.
* ``unknown``: the same without ``--qps``: the adaptive limiter, shared. Targets: at most
  1% throttled; from convergence (the trailing second first holds 90% of the limit) to
  the first process's end, at least 85% of the limit accepted.
* ``unshared`` (full run only): four processes without Redis, each adapting alone.
* ``faults``: ``known``, while Redis is restarted, then stopped and started again, then
  one process gets ``kill -9``. Targets: every id of the three others has its outcome,
  they exit 0, no throttled answer; reported: the fleet's rate before and after the kill.
* ``sdk``: ``known`` with the official SDK's ``RedisRateLimiter`` in place of ours
  (``benchmarks/fleet_sdk_worker.py`` in ``--sdk-python``; the waiter, client and
  schedule are this project's), skipped without the SDK.

Measured at the server (the simulator's log): the worst one-second window, sliding and
on the simulator's own window boundaries, and throttled answers; at Redis (``INFO
commandstats``, reset before each case): round trips per request, counting the commands
clients send (``EVALSHA``, ``SCRIPT LOAD``, connection set-up), not those scripts run; per
process: its polls over its wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from .common import SuiteResult, Target, sim_env
from .simserver import REPO_ROOT, SimProcess
from .suite_sdk import sdk_available

LIMIT = 60
QPS = 55
PROCESSES = 4
BUSY_TARGET = 0.90
THROTTLED_TARGET = 0.01
CONVERGED_TARGET = 0.85
SDK_WORKER = Path(__file__).with_name("fleet_sdk_worker.py")
# Commands a client sends itself; everything else in commandstats ran inside a script.
_CLIENT_COMMANDS = (
    "evalsha",
    "eval",
    "evalsha_ro",
    "eval_ro",
    "script|load",
    "script|exists",
    "ping",
    "hello",
    "client|setinfo",
    "select",
    "auth",
)


def redis_server_or_skip(result: SuiteResult) -> str | None:
    """The ``redis-server`` on PATH, or ``None`` with ``result`` marked skipped (and why)."""
    binary = shutil.which("redis-server")
    if binary is None:
        result.status = "skipped"
        result.notes.append("redis-server is not on PATH (apt-get install -y redis-server)")
    return binary


PERSISTENCE_OFF = ("--save", "", "--appendonly", "no")
"""``redis-server`` arguments for a server that writes nothing to disk."""


class RedisProcess:
    """A ``redis-server`` of the suite's own on a free port of 127.0.0.1, run with
    ``server_args`` (default: persistence off); ``stop`` kills it, or with ``graceful``
    sends SIGTERM so it writes what it has first."""

    def __init__(
        self, binary: str, server_args: Sequence[str] = PERSISTENCE_OFF, *, graceful: bool = False
    ) -> None:
        self.binary = binary
        self.server_args = tuple(server_args)
        self.graceful = graceful
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it; return when it answers (or raise after 10 s, or if it exited)."""
        from redis.asyncio import Redis

        self._process = process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *self.server_args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            client = Redis.from_url(self.url)
            try:
                await client.ping()
                return
            except Exception:  # OSError, redis.ConnectionError before it listens
                if process.returncode is not None:
                    raise RuntimeError(
                        f"redis-server exited with {process.returncode} at start "
                        f"(arguments {list(self.server_args)})"
                    ) from None
                if time.monotonic() > deadline:
                    raise
            finally:
                await client.aclose()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop it (killed: keys and scripts are gone, unless persisted)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if self.graceful:
                process.terminate()
            else:
                process.kill()
            await process.wait()

    async def restart(self) -> None:
        """Stop, then start on the same port."""
        await self.stop()
        await self.start()

    async def client_commands(self, reset: bool = False) -> int:
        """Commands clients sent since the last reset (``reset``: zero the counters)."""
        from redis.asyncio import Redis

        client = Redis.from_url(self.url)
        try:
            if reset:
                await client.config_resetstat()
                return 0
            stats = await client.info("commandstats")
        finally:
            await client.aclose()
        return sum(
            int(entry["calls"])
            for name, entry in stats.items()
            if name.removeprefix("cmdstat_") in _CLIENT_COMMANDS
        )


def _cli_command(ids_path: str, redis_url: str | None, qps: float | None) -> list[str]:
    command = [sys.executable, "-m", "qianfan_export_wait", "wait", "--ids-file", ids_path]
    command += ["--min-delay", "0.5", "--max-delay", "2", "--timeout", "900", "--no-progress"]
    if redis_url is not None:
        command += ["--redis-url", redis_url]
    if qps is not None:
        command += ["--qps", str(qps)]
    return command


def _sdk_command(python: str, ids: list[int], base_url: str, redis: RedisProcess) -> list[str]:
    job = {
        "ids": ids,
        "base_url": base_url,
        "redis_host": "127.0.0.1",
        "redis_port": redis.port,
        "qps": QPS,
        "min_delay": 0.5,
        "max_delay": 2.0,
    }
    return [python, str(SDK_WORKER), json.dumps(job)]


class _Replica:
    """One process of the fleet: its ids, when it started and ended, what it printed."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.ended = math.nan
        self.stdout = ""
        self.killed = False

    async def run(self, command: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *command,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await self.process.communicate()
        self.ended = time.monotonic()
        self.stdout = out.decode("utf-8", "replace")

    @property
    def process_exit_code(self) -> int | None:
        """The exit code (negative: the signal that ended it)."""
        return None if self.process is None else self.process.returncode

    def figures(self, sdk: bool) -> dict[str, Any]:
        """Polls, outcomes and its rate, from what it printed."""
        wall = self.ended - self.started
        code = None if self.process is None else self.process.returncode
        if sdk:
            answer = json.loads(self.stdout.strip().splitlines()[-1]) if code == 0 else {}
            polls = answer.get("polls", 0)
            finished = sum(answer.get("outcomes", {}).values())
        else:
            records = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
            polls = sum(record["polls"] for record in records)
            finished = sum(1 for record in records if record["outcome"] in ("done", "failed"))
        return {
            "exit_code": code,
            "killed": self.killed,
            "ids": len(self.ids),
            "finished": finished,
            "polls": polls,
            "wall_s": round(wall, 2),
            "rate_per_s": round(polls / wall, 2) if wall > 0 else math.nan,
        }


def _most_in_any_second(times: list[float]) -> int:
    most = start = 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _rate_between(times: list[float], start: float, end: float) -> float:
    if not end > start:
        return math.nan
    return sum(1 for at in times if start <= at < end) / (end - start)


async def _case(
    sim: SimProcess,
    redis: RedisProcess,
    *,
    ids_per_process: int,
    spread: float,
    shared: bool = True,
    qps: float | None = QPS,
    sdk_python: str | None = None,
    faults: list[tuple[float, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    env = sim_env(sim.base_url)
    env.pop("QIANFAN_EXPORT_WAIT_REDIS_URL", None)
    replicas = [
        _Replica(await sim.add(ids_per_process, max_seconds=spread, fail_ratio=0.0, seed=n))
        for n in range(PROCESSES)
    ]
    await redis.client_commands(reset=True)
    before = await sim.stats()
    events: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        commands = []
        for n, replica in enumerate(replicas):
            if sdk_python is not None:
                commands.append(_sdk_command(sdk_python, replica.ids, sim.base_url, redis))
                continue
            path = Path(folder) / f"ids-{n}.txt"
            path.write_text("\n".join(map(str, replica.ids)) + "\n", encoding="utf-8")
            commands.append(_cli_command(str(path), redis.url if shared else None, qps))
        started = time.monotonic()
        running = [
            asyncio.ensure_future(replica.run(command, env))
            for replica, command in zip(replicas, commands, strict=True)
        ]
        actions: dict[str, Callable[[], Awaitable[None]]] = {
            "redis restart": redis.restart,
            "redis stop": redis.stop,
            "redis start": redis.start,
        }

        async def inject() -> None:
            for at, action in faults:
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                events.append((time.monotonic(), action))
                if action == "kill -9":
                    victim = replicas[-1]
                    if victim.process is not None and victim.process.returncode is None:
                        victim.killed = True
                        victim.process.send_signal(signal.SIGKILL)
                else:
                    await actions[action]()

        injecting = asyncio.ensure_future(inject())
        await asyncio.gather(*running)
        injecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await injecting
    if faults:
        await redis.stop()
        await redis.start()
    commands_sent = await redis.client_commands() if not faults else math.nan
    after = await sim.stats(requests=True)
    log = [(at, outcome) for at, outcome in after["request_log"] if at >= started]
    sent = [at for at, _ in log]
    accepted = [at for at, outcome in log if outcome == "ok"]
    requests = after["total_requests"] - before["total_requests"]
    throttled = (
        after["requests_by_outcome"]["throttled"] - before["requests_by_outcome"]["throttled"]
    )
    first_at = sent[0] if sent else started
    natural_ends = [replica.ended for replica in replicas if not replica.killed]
    busy = (first_at + 1.0, min(natural_ends))
    figures: dict[str, Any] = {
        "requests": requests,
        "throttled": throttled,
        "throttled_share": round(throttled / max(requests, 1), 4),
        "worst_1s_window": _most_in_any_second(sent),
        "worst_fixed_second": max(Counter(math.floor(at) for at in sent).values(), default=0),
        "busy_s": round(busy[1] - busy[0], 1),
        "busy_rate_per_s": round(_rate_between(sent, *busy), 2),
        "redis_round_trips_per_request": round(commands_sent / max(requests, 1), 3)
        if shared
        else math.nan,
        "processes": [replica.figures(sdk_python is not None) for replica in replicas],
    }
    figures["per_process_rate"] = [p["rate_per_s"] for p in figures["processes"]]
    if qps is None:
        figures.update(_convergence(accepted, busy[1]))
    if faults:
        kill_at = next((at for at, action in events if action == "kill -9"), math.nan)
        survivors = [replica for replica in replicas if not replica.killed]
        figures["events_s"] = [(round(at - started, 1), action) for at, action in events]
        figures["lost_ids"] = sum(
            replica.figures(False)["ids"] - replica.figures(False)["finished"]
            for replica in survivors
        )
        figures["survivor_exit_codes"] = [replica.process_exit_code for replica in survivors]
        figures["rate_before_kill_per_s"] = round(_rate_between(sent, kill_at - 5, kill_at), 2)
        figures["rate_after_kill_per_s"] = round(_rate_between(sent, kill_at + 1, kill_at + 6), 2)
    t0 = math.floor(first_at)
    seconds = range(t0, math.floor(sent[-1]) + 1) if sent else range(0)
    figures["series"] = {
        "t": [second - t0 for second in seconds],
        "accepted": [sum(1 for at in accepted if math.floor(at) == s) for s in seconds],
        "sent": [sum(1 for at in sent if math.floor(at) == s) for s in seconds],
        "events": [(round(at - t0, 2), action) for at, action in events],
    }
    return figures


def _convergence(accepted: list[float], busy_end: float) -> dict[str, float]:
    """When the trailing second first held 90% of the limit, and the share accepted from
    then to ``busy_end``."""
    start = 0
    for end, at in enumerate(accepted):
        while accepted[start] <= at - 1.0:
            start += 1
        if end - start + 1 >= 0.9 * LIMIT:
            rate = _rate_between(accepted, at, busy_end)
            return {
                "converged_after_s": round(at - accepted[0], 2),
                "achieved_share_after": round(rate / LIMIT, 3),
            }
    return {"converged_after_s": math.nan, "achieved_share_after": math.nan}


async def run(quick: bool, sdk_python: str | None = None) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("fleet")
    binary = redis_server_or_skip(result)
    if binary is None:
        return result
    ids, spread = (40, 2.0) if quick else (1000, 20.0)
    scale = 0.06 if quick else 1.0
    faults = [
        (20.0 * scale, "redis restart"),
        (35.0 * scale, "redis stop"),
        (45.0 * scale, "redis start"),
        (55.0 * scale, "kill -9"),
    ]
    python = sdk_python or sys.executable
    with_sdk = await asyncio.to_thread(sdk_available, python)
    redis = RedisProcess(binary)
    await redis.start()
    try:
        async with SimProcess(qps=LIMIT, qps_window="fixed", log_requests=True) as sim:
            cases: dict[str, dict[str, Any]] = {
                "known": await _case(sim, redis, ids_per_process=ids, spread=spread)
            }
            cases["unknown"] = await _case(sim, redis, ids_per_process=ids, spread=spread, qps=None)
            if not quick:
                cases["unshared"] = await _case(
                    sim, redis, ids_per_process=ids, spread=spread, qps=None, shared=False
                )
            cases["faults"] = await _case(
                sim, redis, ids_per_process=ids, spread=spread, faults=faults
            )
            if with_sdk:
                cases["sdk"] = await _case(
                    sim, redis, ids_per_process=ids, spread=spread, sdk_python=python
                )
            else:
                result.notes.append(f"sdk case skipped: qianfan is not importable by {python}")
    finally:
        await redis.stop()
    for name, figures in cases.items():
        result.series[name] = figures.pop("series")
        result.metrics[name] = figures
    result.metrics["setup"] = {
        "processes": PROCESSES,
        "ids_per_process": ids,
        "finish_spread_s": spread,
        "server_limit": LIMIT,
        "server_window": "fixed",
        "qps": QPS,
    }
    known, unknown, fault = cases["known"], cases["unknown"], cases["faults"]
    result.targets += [
        Target("known limit: throttled answers", known["throttled"], 0, ""),
        Target(
            "known limit: fleet rate while all are busy / qps",
            round(known["busy_rate_per_s"] / QPS, 3),
            BUSY_TARGET,
            "",
            op=">=",
        ),
        Target("known limit: worst 1-s window at the server", known["worst_1s_window"], LIMIT, ""),
        Target("unknown limit: throttled share", unknown["throttled_share"], THROTTLED_TARGET, ""),
        Target(
            "unknown limit: accepted / limit after convergence",
            unknown["achieved_share_after"],
            CONVERGED_TARGET,
            "",
            op=">=",
        ),
        Target("faults: ids lost by the surviving processes", fault["lost_ids"], 0, ""),
        Target(
            "faults: surviving processes that did not exit 0",
            sum(1 for code in fault["survivor_exit_codes"] if code != 0),
            0,
            "",
        ),
        Target("faults: throttled answers", fault["throttled"], 0, ""),
        Target("faults: worst 1-s window at the server", fault["worst_1s_window"], LIMIT, ""),
    ]
    if "sdk" in cases:
        result.targets.append(
            Target(
                "official SDK's RedisRateLimiter: worst 1-s window at the server",
                cases["sdk"]["worst_1s_window"],
                math.inf,
                "",
            )
        )
    if quick:
        result.notes.append("quick: 40 ids per process; a smoke run, its figures mean little")
    return result
