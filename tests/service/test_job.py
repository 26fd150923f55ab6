"""``run_export_job``: the whole job for many evaluations of either generation against
the simulator on 127.0.0.1, with faults on creates: one export per evaluation at most,
exactly one for each that finished, every file verified, a journal that prevents
creating twice when the job runs again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from qianfan_export_wait.download import Downloader
from qianfan_export_wait.errors import ConfigurationError, CreateUncertainError
from qianfan_export_wait.job import Journal, run_export_job
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import fast_policy, simulated_qianfan

EVALUATIONS = 40


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_the_job_creates_once_waits_and_downloads_verified_files(
    api: str, tmp_path: Path
) -> None:
    async with simulated_qianfan(
        seed=8,
        create_faults=FaultRates.even(0.1),
        created_export_seconds=0.5,
        file_sizes=(2000, 8000),
    ) as sim:
        evaluations = sim.simulator.add_evaluations(
            EVALUATIONS, max_seconds=1.0, fail_ratio=0.1, partly_done_ratio=0.1
        )
        ids = [e.evaluation_id if api == "v1" else e.evaluation_id_str for e in evaluations]
        journal = tmp_path / "journal.jsonl"
        async with (
            sim.client(api=api) as client,
            Downloader(tmp_path / "files", credentials=sim.credentials,
                       bos_endpoint=sim.base_url) as downloader,
        ):  # fmt: skip
            results = await run_export_job(
                client, ids, policy=fast_policy(), downloader=downloader, journal=journal
            )
            creates = dict(sim.simulator.creates_by_evaluation())
            again = await run_export_job(client, ids, policy=fast_policy(), journal=journal)
        assert sim.simulator.creates_by_evaluation() == creates  # the rerun created nothing
    assert [r.eval_id for r in results] == ids
    by_id = {e.evaluation_id: e for e in evaluations}
    assert max(creates.values()) == 1
    for evaluation, result in zip(evaluations, results, strict=True):
        made = creates.get(evaluation.evaluation_id, 0)
        if evaluation.outcome in ("failed", "stopped"):
            assert (result.outcome, result.stage, made) == ("failed", "evaluation", 0)
        elif result.state == "create_uncertain":
            assert isinstance(result.error, CreateUncertainError) and made <= 1
        elif result.stage == "create":  # a throttle or invalid answer: surely none made
            assert made == 0, result
        else:
            assert (result.outcome, result.stage, made) == ("done", "export", 1), result
            assert result.file is not None and result.download_error is None
            assert _sha256(result.file["path"]) == result.file["sha256"]
    done = [r for r in results if r.outcome == "done"]
    assert len(done) >= EVALUATIONS // 2
    partly = [r for e, r in zip(evaluations, results, strict=True) if e.outcome == "partly_done"]
    assert partly and any(r.outcome == "done" for r in partly)  # PartlyDone counts as done
    assert {by_id[e.evaluation_id].outcome for e in evaluations if e.evaluation_id in creates} <= {
        "done", "partly_done"}  # fmt: skip
    # the rerun read every created export id from the journal and found each still Done
    rerun = {r.eval_id: (r.export_id, r.outcome) for r in again if r.stage == "export"}
    assert rerun == {r.eval_id: (r.export_id, "done") for r in done}
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {line["event"] for line in lines} <= {"creating", "created", "uncertain", "not_created"}


async def test_a_journal_with_an_unanswered_create_is_never_created_again(tmp_path: Path) -> None:
    async with simulated_qianfan(seed=2) as sim:
        evaluation = sim.simulator.add_evaluation(finish_after=0.0)
        journal = Journal(tmp_path / "j.jsonl")
        journal.write(evaluation.evaluation_id, "creating", api="v1")
        journal.close()
        async with sim.client() as client:
            [result] = await run_export_job(
                client, [evaluation.evaluation_id], policy=fast_policy(),
                journal=tmp_path / "j.jsonl",
            )  # fmt: skip
    assert (result.outcome, result.state) == ("error", "create_uncertain")
    assert sim.simulator.creates_by_evaluation() == {}


async def test_bad_job_arguments_are_refused_by_name_before_any_request() -> None:
    async with simulated_qianfan() as sim, sim.client(api="v2") as client:
        with pytest.raises(ConfigurationError, match="V2 takes the string id"):
            await run_export_job(client, [1000001])
        with pytest.raises(ConfigurationError, match="'pdf'"):
            await run_export_job(client, ["ame-x"], content=["pdf"])
        with pytest.raises(ConfigurationError, match="twice"):
            await run_export_job(client, ["ame-x", "ame-x"])
        assert client.stats.requests == 0
