"""``lag``: detection lag against requests, for four poll schedules side by side.

Four groups of exports with the same seeded finish times run at once on one simulator,
each watched by its own schedule (and its own client and limiter):

* ``default``: the project's ``PollPolicy()`` (jittered exponential, 2 s to 60 s);
* ``fixed``: botocore waiters, a fixed ``Delay`` (5 s);
* ``smithy``: the Smithy waiter schedule, jittered exponential from 2 s to 120 s
  (``tenacity.wait_random_exponential``);
* ``sdk-loop``: the official SDK's way, one request at a time over the pending ids, then
  2 s of sleep between rounds;
* ``budget-B``: the round-robin sweep at a budget of ``B`` requests per second
  (``PollPolicy(budget=B)``, ``min_delay`` 2 s), at several budgets: the frontier of
  detection lag against requests spent.

Every delay is multiplied by the run's time scale (1 in full runs, 0.1 with ``--quick``,
where the finish times are spread over 12 s instead of 120 s), and every budget divided
by it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time

from tenacity import wait_fixed, wait_random_exponential

from qianfan_export_wait.waiter import PollPolicy

from .common import SuiteResult, Target, make_client, summarize_lags
from .simserver import SimProcess
from .tracking import score, wait_and_record

SEED = 11


BUDGETS = (8.0, 15.0, 29.0, 45.0, 70.0)
"""Requests per second for the budget sweeps (before time scaling)."""
BUDGET_TARGET = ("default", 3.0)
"""At the default's requests per export, the budget sweep's p99 lag: at most a third."""


def policies(scale: float) -> dict[str, PollPolicy]:
    """The waiter schedules, with delays multiplied by ``scale``."""
    budgets = {
        f"budget-{budget:g}": PollPolicy(
            min_delay=2.0 * scale, max_delay=60.0 * scale, timeout=None, budget=budget / scale
        )
        for budget in BUDGETS
    }
    return {
        **budgets,
        "default": PollPolicy(min_delay=2.0 * scale, max_delay=60.0 * scale, timeout=None),
        "fixed": PollPolicy(
            min_delay=5.0 * scale,
            max_delay=5.0 * scale,
            wait=wait_fixed(5.0 * scale),
            timeout=None,
        ),
        "smithy": PollPolicy(
            min_delay=2.0 * scale,
            max_delay=120.0 * scale,
            wait=wait_random_exponential(
                multiplier=2.0 * scale, min=2.0 * scale, max=120.0 * scale
            ),
            timeout=None,
        ),
    }


async def sdk_style_loop(
    base_url: str, ids: list[int], sleep: float
) -> tuple[dict[int, float], int]:
    """One request at a time over the pending ids, ``sleep`` between rounds."""
    seen: dict[int, float] = {}
    requests = 0
    pending = list(ids)
    async with make_client(base_url) as client:
        while pending:
            still: list[int] = []
            for export_id in pending:
                status = await client.get_status(export_id)
                requests += 1
                if status.is_terminal:
                    seen[export_id] = time.monotonic()
                else:
                    still.append(export_id)
            pending = still
            if pending:
                await asyncio.sleep(sleep)
    return seen, requests


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("lag")
    count, spread, scale = (200, 12.0, 0.1) if quick else (500, 120.0, 1.0)
    result.metrics.update(
        {"exports_per_schedule": count, "finish_spread_s": spread, "time_scale": scale}
    )
    async with SimProcess() as sim:
        groups = {
            name: await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=SEED)
            for name in [*policies(scale), "sdk-loop"]
        }
        jobs = {
            name: asyncio.ensure_future(wait_and_record(sim.base_url, groups[name], policy))
            for name, policy in policies(scale).items()
        }
        sdk_job = asyncio.ensure_future(
            sdk_style_loop(sim.base_url, groups["sdk-loop"], 2.0 * scale)
        )
        points = []
        for name, job in jobs.items():
            seen, outcomes, figures = await job
            scored = await score(sim, seen, outcomes, groups[name])
            row = summarize_lags(scored.lags)
            row["requests_per_export"] = round(figures["requests"] / count, 2)
            row["wrong_or_missing"] = scored.wrong + scored.missing
            result.metrics[name] = row
            points.append({"schedule": name, **row})
        seen, requests = await sdk_job
        scored = await score(sim, seen, None, groups["sdk-loop"])
        row = summarize_lags(scored.lags)
        row["requests_per_export"] = round(requests / count, 2)
        row["wrong_or_missing"] = scored.missing
        result.metrics["sdk-loop"] = row
        points.append({"schedule": "sdk-loop", **row})
    result.series["points"] = points
    _budget_target(result)
    result.notes.append(
        f"delays scaled by {scale:g}; lag = when the waiter saw the final state minus when "
        "the simulator made it final (same system-wide monotonic clock)"
    )
    return result


def _budget_target(result: SuiteResult) -> None:
    """The budget sweep against the default schedule, at the default's requests per
    export: interpolate the budget frontier there and compare p99 lags."""
    default = result.metrics["default"]
    frontier = sorted(
        (row["requests_per_export"], row["lag_p99_s"])
        for name, row in result.metrics.items()
        if isinstance(row, dict) and name.startswith("budget-")
    )
    spend = default["requests_per_export"]
    lag = math.nan
    for (x0, y0), (x1, y1) in itertools.pairwise(frontier):
        if x0 <= spend <= x1:
            lag = y0 if x1 == x0 else y0 + (y1 - y0) * (spend - x0) / (x1 - x0)
            break
    result.metrics["budget_at_default_spend"] = {
        "requests_per_export": spend,
        "lag_p99_s": round(lag, 3),
        "default_lag_p99_s": default["lag_p99_s"],
    }
    result.targets.append(
        Target(
            f"budget sweep p99 lag at the default's {spend:g} requests per export, "
            "over the default's p99 lag",
            round(lag / default["lag_p99_s"], 3) if default["lag_p99_s"] else math.nan,
            1.0 / BUDGET_TARGET[1],
            "x",
        )
    )
