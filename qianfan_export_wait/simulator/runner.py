"""Run the simulator in the foreground: what ``qianfan-export-wait simulate`` calls."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from ..auth import Credentials
from .app import Simulator
from .config import FaultRates, SimulatorConfig
from .credentials import SIMULATOR_CREDENTIALS

__all__ = ["SIMULATOR_CREDENTIALS", "run_simulator"]


async def run_simulator(
    credentials: Credentials,
    *,
    exports: int = 100,
    port: int = 0,
    host: str = "127.0.0.1",
    seed: int = 0,
    qps: float | None = None,
    faults: float | FaultRates = 0.0,
    max_seconds: float = 8.0,
    fail_ratio: float = 0.1,
    slow_delay: float = 2.0,
    retry_after: float | None = None,
    clock_skew: float = 0.0,
    stream: TextIO | None = None,
    on_ready: Callable[[Simulator, str], None] | None = None,
) -> None:
    """Serve exports 1..``exports`` until cancelled (Ctrl-C), then print the request counts.

    The base URL and the shortened access key (never the secret) go to ``stream``
    (default stderr); ``on_ready(simulator, base_url)`` is called once listening.
    ``faults`` is a combined rate split evenly across the five kinds, or a ``FaultRates``.
    """
    out = sys.stderr if stream is None else stream
    rates = faults if isinstance(faults, FaultRates) else FaultRates.even(faults)
    config = SimulatorConfig(
        seed=seed,
        qps=qps,
        faults=rates,
        slow_delay=slow_delay,
        retry_after=retry_after,
        clock_skew=clock_skew,
    )
    simulator = Simulator(credentials, config)
    simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=fail_ratio)
    qps_text = "unlimited" if qps is None else f"{qps:g}"
    async with simulator.serve(host, port) as base_url:
        print(
            f"qianfan-export-wait simulator listening on {base_url}\n"
            f"  access key {credentials.masked_access_key} (the secret key is not shown)\n"
            f"  exports 1..{exports}, seed {seed}, qps {qps_text}, "
            f"fault rate {rates.total:g}\n"
            f"  point clients at it: export QIANFAN_CONSOLE_API_BASE_URL={base_url}\n"
            f"  statistics: {base_url}/_sim/stats   (Ctrl-C stops)",
            file=out,
            flush=True,
        )
        if on_ready is not None:
            on_ready(simulator, base_url)
        try:
            await asyncio.Event().wait()
        finally:
            counts = simulator.stats.requests_by_outcome
            summary = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
            print(
                f"simulator stopped after {simulator.stats.total_requests} requests"
                f"{': ' + summary if summary else ''}",
                file=out,
                flush=True,
            )
