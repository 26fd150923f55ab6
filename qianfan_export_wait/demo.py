"""``qianfan-export-wait demo``: the real waiter against the built-in simulator, no network."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from typing import TextIO

from ._text import counted
from .auth import Credentials
from .client import ExportStatusClient
from .console import Console, Interrupt, WaitPlan, run_wait
from .models import ExportId, ExportState
from .simulator import FaultRates, Simulator, SimulatorConfig
from .waiting import ExportWaiter, OutcomeKind, PollPolicy, kind_for_state

__all__ = ["run_demo"]


async def run_demo(
    *,
    exports: int = 300,
    seed: int = 7,
    console: Console | None = None,
    interrupt: Interrupt | None = None,
    out: TextIO | None = None,
    max_seconds: float = 8.0,
) -> int:
    """Start the simulator in-process, wait for every export, print a summary table on
    ``out`` (default stdout) and the progress on ``console`` (default: stderr).

    The simulator limits the account to 200 requests per second (the waiter is not told),
    injects 5% faults, fails 10% of the exports, and two of the ids do not exist.
    Returns 0 when every outcome matches the simulator's truth, else 1.
    """
    stream = sys.stdout if out is None else out
    if console is None:
        console = Console(None, sys.stderr)
    if interrupt is None:
        task = asyncio.current_task()
        assert task is not None
        interrupt = Interrupt(task)
    credentials = Credentials("demo-" + secrets.token_hex(8), secrets.token_hex(16))
    simulator = Simulator(
        credentials, SimulatorConfig(seed=seed, qps=200, faults=FaultRates.even(0.05))
    )
    simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=0.1)
    ids: list[ExportId] = list(range(1, exports + 1))
    ids[1::2] = [simulator.export(i).export_id_str for i in ids[1::2]]
    unknown: list[ExportId] = [exports + 1000, "amemt-000000000000"]
    started = time.monotonic()
    async with simulator.serve() as base_url:
        console.say(
            f"simulator on {base_url}: {counted(exports, 'export')} finishing over "
            f"{max_seconds:g} s, "
            "200 requests/s allowed, 5% faults"
        )
        async with ExportStatusClient(credentials, base_url=base_url) as client:
            waiter = ExportWaiter(
                client, policy=PollPolicy(min_delay=0.2, max_delay=2.0, timeout=60.0)
            )
            # The lines are not printed (console's stdout is None): the table is the point.
            tally = await run_wait(waiter, WaitPlan([*ids, *unknown]), console, interrupt)
            stats = waiter.stats
    if tally.stopped is not None:
        return tally.stopped
    wall = time.monotonic() - started
    truth = [kind_for_state(ExportState(simulator.state_of(i))) for i in range(1, exports + 1)]
    sim_counts = simulator.stats.requests_by_outcome
    rows = [
        ("done", tally.done, truth.count(OutcomeKind.DONE)),
        ("failed", tally.failed, truth.count(OutcomeKind.FAILED)),
        ("errors (unknown ids)", tally.errors, len(unknown)),
        ("timed out", tally.timed_out, 0),
    ]
    print(f"{'outcome':<22}{'seen':>8}{'truth':>8}", file=stream)
    for name, seen, expected in rows:
        print(f"{name:<22}{seen:>8}{expected:>8}", file=stream)
    print(
        f"\nrequests {stats.requests} ({stats.requests / max(exports, 1):.1f} per export), "
        f"throttled {stats.throttled}, retried after faults {stats.retries}\n"
        f"simulator saw: {dict(sorted((k, v) for k, v in sim_counts.items() if v))}\n"
        f"wall time {wall:.1f} s (last export finished at {max_seconds:g} s)",
        file=stream,
    )
    stream.flush()
    return 0 if all(seen == expected for _, seen, expected in rows) else 1
