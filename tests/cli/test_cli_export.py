"""``qianfan-export-wait export`` end to end: real CLI processes against the simulator on
127.0.0.1, both generations, faults on creates and statuses, killed with SIGKILL at random
points and resumed with ``--resume``: never two exports of one evaluation, every
finished evaluation's file verified."""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
from pathlib import Path

import pytest
from hardening_support import ACCESS_KEY, CLI, SECRET_KEY, cli_env, run_cli

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
EVALUATIONS = 100  # per generation
KILLS = 3
FAST = ("--min-delay", "0.05", "--max-delay", "0.3", "--request-timeout", "2", "--no-progress")


async def _killed_at(args: list[str], env: dict[str, str], after: float) -> int | None:
    """Run the CLI and SIGKILL it ``after`` seconds in (``None``: it ended before)."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        return await asyncio.wait_for(process.wait(), after)
    except TimeoutError:
        process.send_signal(signal.SIGKILL)
        await process.wait()
        return None


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_export_killed_at_random_points_and_resumed_never_creates_twice(
    api: str, tmp_path: Path
) -> None:
    rng = random.Random(f"export-{api}")
    async with simulated_qianfan(
        credentials=CREDENTIALS,
        seed=13,
        faults=FaultRates.even(0.05),
        create_faults=FaultRates.even(0.05),
        slow_delay=0.2,
        created_export_seconds=1.0,
        file_sizes=(1000, 6000),
    ) as sim:
        evaluations = sim.simulator.add_evaluations(
            EVALUATIONS, max_seconds=3.0, fail_ratio=0.1, partly_done_ratio=0.1
        )
        ids = [str(e.evaluation_id) if api == "v1" else e.evaluation_id_str for e in evaluations]
        journal = tmp_path / "journal.jsonl"
        args = ["export", *ids, "--api", api, "--endpoint", sim.base_url, *FAST,
                "--resume", str(journal), "--download", str(tmp_path / "files")]  # fmt: skip
        killed = 0
        for _ in range(KILLS):
            if await _killed_at(args, cli_env(), rng.uniform(0.3, 4.0)) is None:
                killed += 1
            assert max(sim.simulator.creates_by_evaluation().values(), default=0) <= 1
        final = await run_cli(*args, timeout=120.0)
        creates = dict(sim.simulator.creates_by_evaluation())
    assert killed >= 1, "no run was killed: the kill points are too late"
    assert final.code == 1, final.stderr[-3000:]  # some evaluations failed
    records = final.records
    assert [str(r["eval_id"]) for r in records] == ids
    assert max(creates.values()) == 1
    uncertain = 0
    for evaluation, record in zip(evaluations, records, strict=True):
        made = creates.get(evaluation.evaluation_id, 0)
        if evaluation.outcome in ("failed", "stopped"):
            assert (record["outcome"], record["stage"], made) == ("failed", "evaluation", 0)
        elif record["state"] == "create_uncertain":
            uncertain += 1
            assert record["outcome"] == "error" and made <= 1
        elif record["stage"] == "create":
            assert made == 0, record
        else:
            assert (record["outcome"], made) == ("done", 1), record
            file = record["file"]
            assert _sha256(file["path"]) == file["sha256"]
    done = sum(1 for r in records if r["outcome"] == "done")
    assert done >= EVALUATIONS // 2, (done, uncertain)
    print(
        f"{api}: {killed} kills, {done} done, {uncertain} create_uncertain, creates {len(creates)}"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["1000001", "--api", "v2"], "1000001"),
        (["1000001", "--content", "prompt,pdf"], "'pdf'"),
        (["ame-x", "--api", "v2", "--content", "system", "--storage", "BOS"], "bucket"),
        (["1000001", "--storage", "tape"], "'tape'"),
        (["1000001", "--resume", "/nonexistent-dir/journal.jsonl"], "--resume"),
        (["1000001", "--extract"], "--download"),
    ],
)
async def test_export_refuses_bad_usage_by_name_before_any_request(
    args: list[str], named: str
) -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as sim:
        run = await run_cli("export", *args, "--endpoint", sim.base_url)
        requests = sum(sim.stats.requests_by_outcome.values())
    assert run.code == 64, run.stderr
    assert named in run.stderr
    assert requests == 0
