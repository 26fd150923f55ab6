"""Issue #19's "done when", as a script: against the simulator (its own process) and a real
``redis-server``, 3 ``qianfan-export-wait worker`` processes wait for 3,000 exports
submitted by a separate ``submit --wait`` process; mid-run one worker gets SIGKILL,
another is restarted (SIGTERM, then a new one), and Redis is restarted once.

Checks: every id gets exactly one line from ``submit --wait``, each line's outcome is the
simulator's final state (Done -> done, Fail -> failed), the exit code is ``wait``'s, and
with persistence on, exactly one outcome was written per id (the notification stream).

    python -m benchmarks.durable_done_when [--exports 3000] [--persistence aof|none]

Prints one JSON object; exits 0 when every check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from qianfan_export_wait._fleet import fleet_key
from qianfan_export_wait.durable._scripts import QueueKeys
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS

from .common import sim_env
from .simserver import REPO_ROOT, SimProcess
from .suite_fleet import RedisProcess

KEYS = QueueKeys(fleet_key(SIMULATOR_CREDENTIALS.access_key))


class PersistentRedis(RedisProcess):
    """``RedisProcess`` with the append-only file on (fsync every second), in ``folder``;
    restarted with SIGTERM, so Redis writes what it has before it stops."""

    def __init__(self, binary: str, folder: str) -> None:
        aof = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
        super().__init__(binary, (*aof, "--dir", folder), graceful=True)
        self.folder = folder


class _Child:
    """A CLI process whose stderr is read as it comes; ``ready`` is set at ``marker``."""

    def __init__(self, process: asyncio.subprocess.Process, marker: str) -> None:
        self.process = process
        self.marker = marker
        self.stderr: list[str] = []
        self.ready = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr.append(line)
            if self.marker in line:
                self.ready.set()

    async def wait(self) -> int:
        code = await self.process.wait()
        await self._reader
        return code


async def _cli(*args: str, env: dict[str, str], stdout: Any, marker: str) -> _Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qianfan_export_wait",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
    return _Child(process, marker)


async def _worker(url: str, env: dict[str, str]) -> _Child:
    child = await _cli(
        "worker",
        *("--redis-url", url, "--qps", "300", "--min-delay", "1", "--max-delay", "3"),
        *("--claim-idle", "5", "--adopt-every", "0.5", "--capacity", "1200"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        marker="waiting for ids",
    )
    await asyncio.wait_for(child.ready.wait(), 60)
    return child


async def _by_ids_held(url: str, workers: list[_Child]) -> list[tuple[int, _Child]]:
    """The workers with the ids each holds now, most first (consumer names hold pids)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        summary = await client.xpending(KEYS.ids, "workers")
    finally:
        await client.aclose()
    held = {
        int(row["name"].decode().rsplit("-", 2)[-2]): int(row["pending"])
        for row in summary["consumers"] or ()
    }
    return sorted(
        ((held.get(worker.process.pid, 0), worker) for worker in workers),
        key=lambda pair: -pair[0],
    )


async def run(exports: int, persistence: str, spread: float) -> dict[str, Any]:
    import shutil

    from redis.asyncio import Redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    folder = tempfile.mkdtemp(prefix="durable-done-when-")
    redis = PersistentRedis(binary, folder) if persistence == "aof" else RedisProcess(binary)
    await redis.start()
    events: list[tuple[float, str]] = []
    try:
        async with SimProcess(seed=19) as sim:
            ids = await sim.add(exports, max_seconds=spread, fail_ratio=0.1, seed=19)
            env = sim_env(sim.base_url)
            ids_file = Path(folder) / "ids.txt"
            ids_file.write_text("\n".join(map(str, ids)) + "\n", encoding="utf-8")
            started = time.monotonic()

            def note(what: str) -> None:
                events.append((round(time.monotonic() - started, 1), what))

            workers = [await _worker(redis.url, env) for _ in range(3)]
            note("3 workers ready")
            submitter = await _cli(
                "submit",
                *("--ids-file", str(ids_file), "--redis-url", redis.url, "--wait"),
                *("--timeout", "900", "--no-progress"),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                marker="submitted",
            )
            assert submitter.process.stdout is not None
            output = asyncio.ensure_future(submitter.process.stdout.read())
            await asyncio.wait_for(submitter.ready.wait(), 60)
            note("submit --wait has queued the ids")
            await asyncio.sleep(spread * 0.3)
            holders = await _by_ids_held(redis.url, workers)
            victim, restarted = holders[0], holders[1]
            victim[1].process.send_signal(signal.SIGKILL)
            note(f"a worker holding {victim[0]} ids SIGKILLed")
            await asyncio.sleep(spread * 0.15)
            restarted[1].process.send_signal(signal.SIGTERM)
            code = await restarted[1].wait()
            note(f"a worker holding {restarted[0]} ids stopped by SIGTERM (exit {code})")
            workers.append(await _worker(redis.url, env))
            note("worker 3 ready in its place")
            await asyncio.sleep(spread * 0.15)
            await redis.restart()
            note(f"Redis restarted ({persistence})")
            out = await asyncio.wait_for(output, timeout=600)
            note(f"submit --wait exited {await submitter.wait()}")
            finals = await sim.finish_times(ids)
            stats = await sim.stats()
            client = Redis.from_url(redis.url)
            try:
                notified = [fields[b"id"].decode() for _, fields in await client.xrange(KEYS.done)]
            finally:
                await client.aclose()
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.send_signal(signal.SIGTERM)
            for worker in workers:
                await worker.wait()
    finally:
        await redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    records = [json.loads(line) for line in out.decode().splitlines()]
    lines_per_id = Counter(record["export_id"] for record in records)
    expected = {
        i: {"Done": "done", "Fail": "failed"}.get(state, state) for i, (_, state) in finals.items()
    }
    wrong = [r["export_id"] for r in records if expected.get(r["export_id"]) != r["outcome"]]
    notified_per_id = Counter(notified)
    checks = {
        "every id has exactly one line": len(records) == exports
        and set(lines_per_id) == set(ids)
        and max(lines_per_id.values()) == 1,
        "every outcome is the simulator's final state": not wrong,
        "exit code is wait's (1: some exports Fail)": submitter.process.returncode == 1,
    }
    if persistence == "aof":
        checks["one outcome written per id (notifications)"] = len(notified) == exports and (
            max(notified_per_id.values()) == 1
        )
    return {
        "exports": exports,
        "persistence": persistence,
        "events_s": events,
        "wall_s": round(time.monotonic() - started, 1),
        "lines": len(records),
        "outcomes": dict(Counter(record["outcome"] for record in records)),
        "wrong_outcomes": wrong[:10],
        "notifications": len(notified),
        "status_requests": stats["total_requests"],
        "submit_exit_code": submitter.process.returncode,
        "submit_stderr_tail": submitter.stderr[-3:],
        "worker_exit_codes": [worker.process.returncode for worker in workers],
        "worker_summaries": [
            line for worker in workers for line in worker.stderr if "stopped by" in line
        ],
        "worker_stderr_tails": [worker.stderr[-4:] for worker in workers],
        "checks": checks,
        "ok": all(checks.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durable_done_when")
    parser.add_argument("--exports", type=int, default=3000)
    parser.add_argument("--persistence", choices=("aof", "none"), default="aof")
    parser.add_argument("--spread", type=float, default=60.0, help="exports finish within S s")
    args = parser.parse_args()
    result = asyncio.run(run(args.exports, args.persistence, args.spread))
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
