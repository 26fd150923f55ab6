"""``sdk``: the official SDK's sequential loop against ``wait_all``, on the same exports.

Two groups of 200 exports with identical seeded finish times, each added just before its
run: first ``qianfan.resources.Model.get_evaluation_result_export_task_status`` in a
sequential loop with 2 s between rounds (``benchmarks/sdk_loop.py``, run by an
interpreter that has ``qianfan``: ``--sdk-python``, default this one), then ``wait_all``
with a fixed 2 s schedule (the same cadence, so the difference is the concurrency and the
per-call cost). The suite is skipped when no interpreter with ``qianfan`` is given.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tenacity import wait_fixed

from qianfan_export_wait.waiter import PollPolicy

from .common import SuiteResult, sim_env, summarize_lags
from .simserver import SimProcess
from .tracking import score, wait_and_record

SDK_LOOP = Path(__file__).with_name("sdk_loop.py")
SEED = 17


def sdk_available(python: str) -> bool:
    """Whether ``python`` can import ``qianfan``."""
    try:
        probe = subprocess.run(
            [python, "-c", "import qianfan"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _run_sdk_loop(python: str, base_url: str, ids: list[int], sleep: float) -> dict[str, Any]:
    env = sim_env(base_url)
    completed = subprocess.run(
        [python, str(SDK_LOOP), json.dumps({"ids": ids, "sleep": sleep})],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer


async def run(quick: bool, sdk_python: str | None = None) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("sdk")
    python = sdk_python or sys.executable
    if not await asyncio.to_thread(sdk_available, python):
        result.status = "skipped"
        result.notes.append(
            f"qianfan is not importable by {python}; pass --sdk-python with an interpreter "
            "that has it (pip install qianfan, best in its own venv: it pins tenacity<9)"
        )
        return result
    count, spread = (200, 4.0) if quick else (200, 20.0)
    async with SimProcess() as sim:
        ids = await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=SEED)
        sdk = await asyncio.to_thread(_run_sdk_loop, python, sim.base_url, ids, 2.0)
        sdk_seen = {int(key): value for key, value in sdk["seen"].items()}
        sdk_scored = await score(sim, sdk_seen, None, ids)

        ids = await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=SEED)
        policy = PollPolicy(min_delay=2.0, max_delay=2.0, wait=wait_fixed(2.0), timeout=None)
        seen, outcomes, figures = await wait_and_record(sim.base_url, ids, policy)
        ours = await score(sim, seen, outcomes, ids)
    result.metrics = {
        "exports": count,
        "finish_spread_s": spread,
        "sdk_loop": {
            "wall_s": round(sdk["wall_s"], 2),
            "calls": sdk["calls"],
            "cpu_us_per_call": round(sdk["cpu_s"] / sdk["calls"] * 1e6, 1),
            "import_cpu_s": round(sdk["import_cpu_s"], 2),
            **summarize_lags(sdk_scored.lags),
        },
        "wait_all": {
            "wall_s": round(figures["wall_s"], 2),
            "calls": figures["requests"],
            "cpu_us_per_call": round(figures["cpu_s"] / figures["requests"] * 1e6, 1),
            "wrong_or_missing": ours.wrong + ours.missing,
            **summarize_lags(ours.lags),
        },
    }
    result.metrics["cpu_per_call_sdk_over_wait_all"] = round(
        result.metrics["sdk_loop"]["cpu_us_per_call"]
        / result.metrics["wait_all"]["cpu_us_per_call"],
        2,
    )
    result.notes.append(f"SDK interpreter: {python}")
    return result
