"""``e2e``: many exports finishing over a minute, waited for by ``wait_all``.

The ideal wall time is the last finish plus one maximum poll delay (the longest a
schedule capped at ``max_delay`` can take to notice it).
"""

from __future__ import annotations

import math

from qianfan_export_wait.waiter import PollPolicy

from .common import SuiteResult, Target, summarize_lags
from .simserver import SimProcess
from .tracking import score, wait_and_record


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("e2e")
    count, spread, policy = (
        (2000, 10.0, PollPolicy(min_delay=0.2, max_delay=2.0, timeout=None))
        if quick
        else (10_000, 60.0, PollPolicy(min_delay=1.0, max_delay=10.0, timeout=None))
    )
    async with SimProcess() as sim:
        ids = await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=5)
        seen, outcomes, figures = await wait_and_record(sim.base_url, ids, policy)
        scored = await score(sim, seen, outcomes, ids)
        stats = await sim.stats()
    ideal = scored.last_finish - figures["started"] + policy.max_delay
    result.metrics = {
        "exports": count,
        "finish_spread_s": spread,
        "policy": f"min_delay={policy.min_delay:g} max_delay={policy.max_delay:g}",
        "wall_s": round(figures["wall_s"], 2),
        "ideal_s": round(ideal, 2),
        "wall_over_ideal": round(figures["wall_s"] / ideal, 3),
        "requests": figures["requests"],
        "requests_per_export": round(figures["requests"] / count, 2),
        "cpu_s": round(figures["cpu_s"], 2),
        "cpu_us_per_request": round(figures["cpu_s"] / figures["requests"] * 1e6, 1),
        "peak_requests_per_s_at_server": stats["peak_requests_per_second"],
        "wrong_or_missing": scored.wrong + scored.missing,
        **summarize_lags(scored.lags),
    }
    result.targets.append(
        Target("wall time / ideal", result.metrics["wall_over_ideal"], math.inf, "x")
    )
    result.targets.append(Target("wrong or missing outcomes", scored.wrong + scored.missing, 0, ""))
    return result
