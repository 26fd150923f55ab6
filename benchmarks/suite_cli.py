"""``cli``: the command line's CPU per request against ``get_status`` alone, in one run.

Two processes take turns on the same core, the simulator on the other:

* ``get_status`` alone: 64 coroutines (the waiter's default ``max_in_flight``) calling
  ``get_status`` on 2,000 held exports in turn (``benchmarks.cpu_worker get-status``);
* the real CLI, ``qianfan-export-wait wait --ids-file`` on the same 2,000 held exports with
  ``--min-delay``/``--max-delay`` near zero and a rate limit far above what the simulator
  can answer, so every export is due again as soon as it is answered: dispatch, limiter,
  bookkeeping and the request path, end to end.

Each side runs for a warm-up, then a measured window: its CPU from ``/proc/PID/stat`` and
its requests from the simulator's counter, read at both ends of the window. Startup,
reading the ids and the final output stay outside the window. Rounds alternate which side
goes first; figures are medians over rounds. Measured twice: the default install (asyncio,
the standard library's JSON) and the ``fast`` extra (uvloop, orjson), when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import SuiteResult, Target, percentile, sim_env
from .simserver import REPO_ROOT, SimProcess

TARGET_RATIO = 1.10
_IDS = 2000
_CONCURRENCY = 64  # DEFAULT_MAX_IN_FLIGHT
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _command(side: str, fast: bool, url: str, ids_path: str, first: int, last: int) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.cpu_worker"]
    command += ["--event-loop", "uvloop"] if fast else ["--stdlib-json"]
    if side == "get_status":
        return [*command, "get-status", url, str(first), str(last), str(_CONCURRENCY)]
    return [
        *command,
        "cli",
        "wait",
        "--ids-file",
        ids_path,
        "--endpoint",
        url,
        "--min-delay",
        "0.001",
        "--max-delay",
        "0.001",
        "--qps",
        "100000",
        "--max-in-flight",
        str(_CONCURRENCY),
        "--timeout",
        "3600",
        "--quiet",
    ]


async def _measure(
    sim: SimProcess, command: list[str], cpu: int | None, warmup: float, seconds: float
) -> dict[str, float]:
    env = sim_env(sim.base_url)
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        if cpu is not None:
            os.sched_setaffinity(process.pid, {cpu})
        await asyncio.sleep(warmup)
        if process.returncode is not None:
            raise RuntimeError(f"{command} exited {process.returncode} during warm-up")
        requests_before = (await sim.stats())["total_requests"]
        cpu_before = _cpu_seconds(process.pid)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        cpu_used = _cpu_seconds(process.pid) - cpu_before
        wall = time.monotonic() - started
        requests = (await sim.stats())["total_requests"] - requests_before
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
    return {
        "requests": requests,
        "requests_per_s": round(requests / wall),
        "cpu_share": round(cpu_used / wall, 3),
        "cpu_us_per_request": cpu_used / max(requests, 1) * 1e6,
    }


async def _variant(
    sim: SimProcess,
    fast: bool,
    ids_path: str,
    ids: list[int],
    rounds: int,
    cpu: int | None,
    timing: tuple[float, float],
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"get_status": [], "cli": []}
    for round_number in range(rounds):
        order = ("cli", "get_status") if round_number % 2 else ("get_status", "cli")
        for side in order:
            command = _command(side, fast, sim.base_url, ids_path, ids[0], ids[-1])
            runs[side].append(await _measure(sim, command, cpu, *timing))
    ratios = [
        cli["cpu_us_per_request"] / alone["cpu_us_per_request"]
        for cli, alone in zip(runs["cli"], runs["get_status"], strict=True)
    ]

    def median(side: str, key: str) -> float:
        return round(percentile([run[key] for run in runs[side]], 0.5), 1)

    return {
        "cli_cpu_us_per_request": median("cli", "cpu_us_per_request"),
        "get_status_cpu_us_per_request": median("get_status", "cpu_us_per_request"),
        "cli_requests_per_s": median("cli", "requests_per_s"),
        "get_status_requests_per_s": median("get_status", "requests_per_s"),
        "cli_cpu_share": median("cli", "cpu_share"),
        "get_status_cpu_share": median("get_status", "cpu_share"),
        "cpu_ratio_median": round(percentile(ratios, 0.5), 3),
        "ratios": [round(ratio, 3) for ratio in ratios],
    }


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("cli")
    rounds, timing = (2, (2.0, 1.5)) if quick else (5, (3.0, 4.0))
    own_cpus = os.sched_getaffinity(0)
    pinned = len(own_cpus) >= 2
    client_cpu, server_cpu = sorted(own_cpus)[:2] if pinned else (None, None)
    fast_installed = all(
        importlib.util.find_spec(name) is not None for name in ("uvloop", "orjson")
    )
    result.metrics = {"rounds": rounds, "warmup_s": timing[0], "window_s": timing[1]}
    async with SimProcess(cpus={server_cpu} if server_cpu is not None else None) as sim:
        ids = await sim.add(_IDS, held=True)
        with tempfile.TemporaryDirectory() as folder:
            ids_path = Path(folder) / "ids.txt"
            ids_path.write_text("\n".join(map(str, ids)) + "\n", encoding="utf-8")
            for fast in (False, True) if fast_installed else (False,):
                key = "fast_extra" if fast else "default"
                figures = await _variant(sim, fast, str(ids_path), ids, rounds, client_cpu, timing)
                result.metrics[key] = figures
                label = "uvloop + orjson" if fast else "asyncio + stdlib json"
                result.targets.append(
                    Target(
                        f"CLI CPU per request / get_status alone ({label})",
                        figures["cpu_ratio_median"],
                        TARGET_RATIO,
                        "x",
                    )
                )
    if fast_installed:
        default, fast_figures = result.metrics["default"], result.metrics["fast_extra"]
        result.metrics["fast_extra_cli_cpu_share_of_default"] = round(
            fast_figures["cli_cpu_us_per_request"] / default["cli_cpu_us_per_request"], 3
        )
    else:
        result.notes.append("uvloop/orjson not installed: the fast extra was not measured")
    if pinned:
        result.notes.append(f"measured side pinned to CPU {client_cpu}, simulator to {server_cpu}")
    return result
