"""The issue-21 run, in real time: a simulator at 20/s whose throttles say
``Retry-After: 86400``, 300 exports Done within 10 s, one waiter with a 120 s timeout.

    python -m benchmarks.retry_after_day [MAX_RETRY_AFTER]

Prints how long it took, the waiter's counts and the simulator's (about two minutes at
most). The figures go in benchmarks/RESULTS.md, never here.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from aiohttp import web

from qianfan_export_wait import ExportStatusClient, ExportWaiter, PollPolicy
from qianfan_export_wait.simulator import Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials
from qianfan_export_wait.waiting.policy import DEFAULT_MAX_RETRY_AFTER


async def _a_day(request: web.Request, response: web.StreamResponse) -> None:
    if "Retry-After" in response.headers:
        response.headers["Retry-After"] = "86400"


async def main(max_retry_after: float) -> None:
    simulator = Simulator(generate_credentials(), SimulatorConfig(seed=21, qps=20, retry_after=1.0))
    simulator.add_exports(300, max_seconds=10.0, fail_ratio=0.0)
    simulator.app.on_response_prepare.append(_a_day)
    policy = PollPolicy(min_delay=1, max_delay=10, timeout=120, max_retry_after=max_retry_after)
    async with simulator.serve() as base_url:
        async with ExportStatusClient(simulator.credentials, base_url=base_url) as client:
            waiter = ExportWaiter(client, policy=policy)
            started = time.monotonic()
            await waiter.wait_all(range(1, 301))
            took = time.monotonic() - started
    stats = waiter.stats
    print(
        f"max_retry_after={max_retry_after:g} s: {took:.1f} s, done={stats.done} "
        f"timed_out={stats.timed_out} requests={stats.requests} throttled={stats.throttled}"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    bound = float(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MAX_RETRY_AFTER
    asyncio.run(main(bound))
