"""Run the simulator in the foreground: what ``qianfan-export-wait simulate`` calls."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from .._text import counted
from ..auth import Credentials
from .app import Simulator
from .config import ApiChoice, FaultRates, SimulatorConfig
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
    api: ApiChoice = "both",
    evaluations: int = 0,
    stream: TextIO | None = None,
    on_ready: Callable[[Simulator, str], None] | None = None,
) -> None:
    """Serve exports 1..``exports`` and ``evaluations`` evaluations (ids from 1000001, on
    the same seeded timeline and fail ratio) over the ``api`` generations (``"v1"``,
    ``"v2"`` or ``"both"``) until cancelled (Ctrl-C), then print the request counts.

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
        api=api,
    )
    simulator = Simulator(credentials, config)
    simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=fail_ratio)
    added = simulator.add_evaluations(evaluations, max_seconds=max_seconds, fail_ratio=fail_ratio)
    evaluation_text = (
        f"  evaluations {added[0].evaluation_id}..{added[-1].evaluation_id} "
        f"({added[0].evaluation_id_str}...)\n"
        if added
        else ""
    )
    api_text = {"v1": "V1", "v2": "V2", "both": "V1 and V2"}[api]
    qps_text = "unlimited" if qps is None else f"{qps:g}"
    async with simulator.serve(host, port) as base_url:
        print(
            f"qianfan-export-wait simulator listening on {base_url}\n"
            f"  access key {credentials.masked_access_key} (the secret key is not shown)\n"
            f"  API {api_text}; exports 1..{exports}, seed {seed}, qps {qps_text}, "
            f"fault rate {rates.total:g}\n"
            f"{evaluation_text}"
            f"  point clients at it: export QIANFAN_CONSOLE_API_BASE_URL={base_url}\n"
            f"  and its storage files: export QIANFAN_BOS_ENDPOINT={base_url}"
            " (or wait --bos-endpoint)\n"
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
                f"simulator stopped after {counted(simulator.stats.total_requests, 'request')}"
                f"{': ' + summary if summary else ''}",
                file=out,
                flush=True,
            )
