"""Fault soak: 5,000 exports against the simulator injecting every fault kind at a
combined 30%. Every id ends in its true state exactly once, as in the fault-free run of
the same seeded schedule. How long the faulty run takes against the fault-free one (at
most 1.5 times) is a benchmark figure, not a test: ``python -m benchmarks --only
acceptance`` measures it on a quiet machine (a loaded one stretches either run).

The simulator runs in its own process (its own core), and the schedule is long enough
that both runs are bound by when the exports finish, not by how many requests one core
can push: the bound then measures what faults cost the waiter (retries, resets, slow
answers), not the CPU price of the extra requests. Both runs happen in this one test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from qianfan_export_wait import ExportStatusClient, ExportWaiter, OutcomeKind, PollPolicy
from qianfan_export_wait.simulator import FAULT_KINDS, Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials

EXPORTS = 5000
SCHEDULE_SECONDS = 8.0
SEED = 11
IN_FLIGHT = 64
POLICY = PollPolicy(min_delay=0.5, max_delay=2.0, timeout=60)
TRUE_KIND = {"Done": OutcomeKind.DONE, "Fail": OutcomeKind.FAILED}
CREDENTIALS = generate_credentials()
SERVE = """
import asyncio
from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.simulator import run_simulator
asyncio.run(run_simulator(Credentials.from_env(), port=0, exports={exports}, seed={seed},
    faults={faults}, max_seconds={seconds}, fail_ratio=0.1, slow_delay=0.2))
"""


def true_kinds() -> dict[int, OutcomeKind]:
    """The seeded schedule's final states, from a simulator that serves nothing."""
    twin = Simulator(CREDENTIALS, SimulatorConfig(seed=SEED))
    twin.add_exports(EXPORTS, max_seconds=SCHEDULE_SECONDS, fail_ratio=0.1)
    return {i: TRUE_KIND[twin.export(i).final_state] for i in range(1, EXPORTS + 1)}


@contextmanager
def simulator_process(faults: float) -> Iterator[str]:
    env = {
        **os.environ,
        "QIANFAN_ACCESS_KEY": CREDENTIALS.access_key,
        "QIANFAN_SECRET_KEY": CREDENTIALS.secret_key,
    }
    code = SERVE.format(exports=EXPORTS, seed=SEED, faults=faults, seconds=SCHEDULE_SECONDS)
    with subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if "listening on " in line:
                    yield line.split("listening on ", 1)[1].strip()
                    break
            else:
                raise AssertionError(f"simulator did not start (exit {process.wait()})")
        finally:
            process.terminate()
            process.communicate(timeout=10)


async def soak(faults: float) -> tuple[float, list[object], dict[int, OutcomeKind], dict[str, int]]:
    """One run: wall seconds, ids in the order reported, outcomes, simulator counts."""
    with simulator_process(faults) as base_url:
        async with ExportStatusClient(
            CREDENTIALS, base_url=base_url, request_timeout=2.0, connection_limit=IN_FLIGHT
        ) as client:
            waiter = ExportWaiter(client, policy=POLICY, max_in_flight=IN_FLIGHT)
            started = time.monotonic()
            reported: list[object] = []
            kinds: dict[int, OutcomeKind] = {}
            async for outcome in waiter.as_completed(range(1, EXPORTS + 1)):
                assert isinstance(outcome.export_id, int)
                reported.append(outcome.export_id)
                kinds[outcome.export_id] = outcome.kind
            wall = time.monotonic() - started
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base_url}/_sim/stats") as answer:
                counts = (await answer.json())["requests_by_outcome"]
    return wall, reported, kinds, counts


async def test_five_thousand_exports_under_thirty_percent_faults_all_end_true_once() -> None:
    truth = true_kinds()
    clean_wall, clean_ids, clean_kinds, _ = await soak(0.0)
    faulty_wall, faulty_ids, faulty_kinds, faulty_counts = await soak(0.3)
    numbers = (
        f"fault-free {clean_wall:.2f} s, faulty {faulty_wall:.2f} s "
        f"(ratio {faulty_wall / clean_wall:.2f}); simulator saw {faulty_counts}"
    )
    print(numbers)  # shown with -s; the 1.5x bound is benchmarks/suite_acceptance.py's
    for reported in (clean_ids, faulty_ids):
        assert len(reported) == EXPORTS, numbers
        assert sorted(reported) == list(range(1, EXPORTS + 1)), numbers  # type: ignore[type-var]
    assert clean_kinds == truth, numbers
    assert faulty_kinds == truth, numbers
    assert all(faulty_counts[kind] > 0 for kind in FAULT_KINDS), numbers
