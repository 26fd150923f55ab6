"""``throttle``: a server limit the client is not told about.

The simulator allows 20 or 100 requests per second (sliding window; the fixed-window
variant too); the waiter runs with ``qps=None`` (the adaptive limiter) over held exports
polled every 50-200 ms, so it always wants far more than the limit. Every 0.25 s we
sample the limiter's rate and the client's accepted and throttled counts.

Convergence: the first moment the accepted count over the trailing second reaches 90% of
the limit. After it: the throttled share of requests and the accepted rate as a share of
the limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

from .common import SuiteResult, Target, make_client
from .simserver import SimProcess

THROTTLED_TARGET = 0.02
ACHIEVED_TARGET = 0.90
_SAMPLE_SECONDS = 0.25


async def _one(limit: int, window: str, seconds: float) -> dict[str, Any]:
    async with SimProcess(qps=limit, qps_window=window) as sim:
        ids = await sim.add(3000, held=True)
        async with make_client(sim.base_url) as client:
            waiter = ExportWaiter(
                client, policy=PollPolicy(min_delay=0.05, max_delay=0.2, timeout=None)
            )
            samples: list[tuple[float, int, int, int, float]] = []
            waiting = asyncio.ensure_future(waiter.wait_all(ids))
            started = time.monotonic()
            while (now := time.monotonic()) - started < seconds:
                stats = client.stats
                samples.append(
                    (
                        now - started,
                        stats.requests,
                        stats.succeeded,
                        stats.throttled,
                        waiter.stats.rate,
                    )
                )
                await asyncio.sleep(_SAMPLE_SECONDS)
            waiting.cancel()
            await asyncio.wait({waiting})
    per_second = round(1.0 / _SAMPLE_SECONDS)
    converged_at = math.nan
    index_converged = None
    for index in range(per_second, len(samples)):
        accepted = samples[index][2] - samples[index - per_second][2]
        if accepted >= ACHIEVED_TARGET * limit:
            converged_at, index_converged = samples[index][0], index
            break
    times = [sample[0] for sample in samples]
    accepted_rate = [0.0] + [
        (samples[i][2] - samples[i - 1][2]) / (samples[i][0] - samples[i - 1][0])
        for i in range(1, len(samples))
    ]
    figures: dict[str, Any] = {
        "limit": limit,
        "window": window,
        "seconds": seconds,
        "requests": samples[-1][1],
        "throttled_share_overall": round(samples[-1][3] / max(samples[-1][1], 1), 4),
        "converged_after_s": round(converged_at, 2),
    }
    if index_converged is not None:
        first, last = samples[index_converged], samples[-1]
        requests = last[1] - first[1]
        figures["throttled_share_after"] = round((last[3] - first[3]) / max(requests, 1), 4)
        figures["achieved_share_after"] = round(
            (last[2] - first[2]) / ((last[0] - first[0]) * limit), 3
        )
    else:
        figures["throttled_share_after"] = math.nan
        figures["achieved_share_after"] = math.nan
    figures["series"] = {
        "t": [round(t, 3) for t in times],
        "limiter_rate": [round(sample[4], 2) for sample in samples],
        "accepted_per_s": [round(rate, 2) for rate in accepted_rate],
    }
    return figures


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("throttle")
    seconds = 6.0 if quick else 30.0
    cases = [(20, "sliding"), (100, "sliding"), (100, "fixed")]
    if not quick:
        cases.append((20, "fixed"))
    for limit, window in cases:
        figures = await _one(limit, window, seconds)
        key = f"{limit}qps-{window}"
        result.series[key] = figures.pop("series")
        result.metrics[key] = figures
        result.targets.append(
            Target(
                f"{key}: throttled share after convergence",
                figures["throttled_share_after"],
                THROTTLED_TARGET,
                "",
            )
        )
        result.targets.append(
            Target(
                f"{key}: achieved rate / limit after convergence",
                figures["achieved_share_after"],
                ACHIEVED_TARGET,
                "",
                op=">=",
            )
        )
    return result
