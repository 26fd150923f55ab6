"""``qianfan-export-wait demo``: the real waiter against the built-in simulator, no network."""

from __future__ import annotations

import io
import secrets
import sys
import time
from typing import TextIO

from .auth import Credentials
from .client import ExportStatusClient
from .simulator import FaultRates, Simulator, SimulatorConfig
from .waiter import ExportWaiter, OutcomeKind, PollPolicy

__all__ = ["run_demo"]


async def run_demo(
    *,
    exports: int = 300,
    seed: int = 7,
    progress: bool = True,
    out: TextIO | None = None,
    max_seconds: float = 8.0,
) -> int:
    """Start the simulator in-process, wait for every export, print a summary table.

    The simulator limits the account to 200 requests per second (the waiter is not told),
    injects 5% faults, fails 10% of the exports, and two of the ids do not exist.
    Returns 0 when every outcome matches the simulator's truth, else 1.
    """
    from .cli import Progress, run_wait

    stream = sys.stdout if out is None else out
    credentials = Credentials("demo-" + secrets.token_hex(8), secrets.token_hex(16))
    simulator = Simulator(
        credentials, SimulatorConfig(seed=seed, qps=200, faults=FaultRates.even(0.05))
    )
    simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=0.1)
    ids: list[int | str] = list(range(1, exports + 1))
    ids[1::2] = [simulator.export(i).export_id_str for i in ids[1::2]]
    unknown: list[int | str] = [exports + 1000, "amemt-000000000000"]
    started = time.monotonic()
    async with simulator.serve() as base_url:
        print(
            f"simulator on {base_url}: {exports} exports finishing over {max_seconds:g} s, "
            "200 requests/s allowed, 5% faults",
            file=sys.stderr,
        )
        async with ExportStatusClient(credentials, base_url=base_url) as client:
            waiter = ExportWaiter(
                client, policy=PollPolicy(min_delay=0.2, max_delay=2.0, timeout=60.0)
            )
            counts, _, _ = await run_wait(
                waiter,
                ids + unknown,
                io.StringIO(),  # the demo shows a summary, not the JSON lines
                progress=Progress(len(ids) + len(unknown), progress, sys.stderr),
            )
            stats = waiter.stats
    wall = time.monotonic() - started
    expected_done = sum(1 for i in range(1, exports + 1) if simulator.state_of(i) == "Done")
    expected_failed = exports - expected_done
    sim_counts = simulator.stats.requests_by_outcome
    rows = [
        ("done", counts[OutcomeKind.DONE], expected_done),
        ("failed", counts[OutcomeKind.FAILED], expected_failed),
        ("errors (unknown ids)", counts[OutcomeKind.ERROR], len(unknown)),
        ("timed out", counts[OutcomeKind.TIMEOUT], 0),
    ]
    print(f"{'outcome':<22}{'seen':>8}{'truth':>8}", file=stream)
    for name, seen, truth in rows:
        print(f"{name:<22}{seen:>8}{truth:>8}", file=stream)
    print(
        f"\nrequests {stats.requests} ({stats.requests / max(exports, 1):.1f} per export), "
        f"throttled {stats.throttled}, retried after faults {stats.retries}\n"
        f"simulator saw: {dict(sorted((k, v) for k, v in sim_counts.items() if v))}\n"
        f"wall time {wall:.1f} s (last export finished at {max_seconds:g} s)",
        file=stream,
    )
    return 0 if all(seen == truth for _, seen, truth in rows) else 1
