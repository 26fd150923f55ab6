"""A download link refreshed during the export job is a status poll like any other: it
books a slot of the job's rate limiter (and so of a fleet limiter), whether the job runs
from ``job.run_export_job`` or ``sync.run_export_job``. Against the simulator on
127.0.0.1: every link is refused until a status request that booked a slot of the
limiter follows the first file request."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_support import ACCESS_KEY, SECRET_KEY

from qianfan_export_wait import sync
from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.download import Downloader
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.job import run_export_job
from qianfan_export_wait.ratelimit import FixedRateLimiter, Reservation
from qianfan_export_wait.simulator import DownloadFaultRates
from qianfan_export_wait.testing import (
    SimulatedQianfan,
    fast_policy,
    simulated_qianfan,
    simulated_qianfan_in_thread,
)

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


class _SlotsAfterFirstFile(FixedRateLimiter):
    """Counts the slots booked once the simulator has seen a file request, and heals the
    refused links at the first of them (a refresh inside the limit gets a good link)."""

    def __init__(self, sim: SimulatedQianfan) -> None:
        super().__init__(1000.0)
        self.sim = sim
        self.after_first_file = 0

    def reserve(self, now: float) -> Reservation:
        if self.sim.stats.total_file_requests > 0:
            self.after_first_file += 1
            if self.after_first_file == 1:
                self.sim.configure(download_faults=DownloadFaultRates())
        return super().reserve(now)


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_link_refreshed_by_the_job_books_a_slot_of_its_limiter(
    api: str, tmp_path: Path
) -> None:
    async with simulated_qianfan(credentials=CREDENTIALS, file_sizes=(500, 900)) as sim:
        evaluation = sim.add_evaluation(finish_after=0.0)
        eval_id = evaluation.evaluation_id if api == "v1" else evaluation.evaluation_id_str
        limiter = _SlotsAfterFirstFile(sim)
        async with (
            sim.client(api=api) as client,
            # The refresh the callers used to give: straight to the client, no slot.
            Downloader(tmp_path, credentials=CREDENTIALS, refresh=client.get_status,
                       max_attempts=3) as downloader,
        ):  # fmt: skip
            sim.configure(download_faults=DownloadFaultRates(forbidden=1.0))
            [result] = await run_export_job(
                client, [eval_id], policy=fast_policy(), downloader=downloader, limiter=limiter
            )
        refused = sim.stats.file_requests_by_outcome["forbidden"]
    assert (result.outcome, result.stage) == ("done", "export"), result
    assert result.download_error is None and result.file is not None, result
    assert refused == 1
    assert limiter.after_first_file == 1  # the one refresh, and nothing else


def test_a_link_refreshed_by_sync_run_export_job_books_a_slot(tmp_path: Path) -> None:
    with simulated_qianfan_in_thread(credentials=CREDENTIALS, file_sizes=(500, 900)) as sim:
        evaluation = sim.add_evaluation(finish_after=0.0)
        limiter = _SlotsAfterFirstFile(sim)
        sim.configure(download_faults=DownloadFaultRates(forbidden=1.0))
        [result] = sync.run_export_job(
            [evaluation.evaluation_id],
            credentials=CREDENTIALS,
            base_url=sim.base_url,
            download_to=tmp_path,
            job_options={"policy": fast_policy(), "limiter": limiter},
        )
        refused = sim.stats.file_requests_by_outcome["forbidden"]
    assert (result.outcome, result.download_error) == ("done", None), result
    assert result.file is not None and Path(result.file["path"]).is_file()
    assert (refused, limiter.after_first_file) == (1, 1)


async def test_qps_and_a_limiter_together_are_refused_by_name() -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as sim, sim.client() as client:
        with pytest.raises(ConfigurationError, match=r"qps \(5\.0\).*FixedRateLimiter"):
            await run_export_job(client, [1], qps=5.0, limiter=FixedRateLimiter(5.0))
