"""The waiter with a downloader: each export's file is fetched as it reaches Done, and its
outcome carries the file or the reason there is none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tenacity import wait_none

from qianfan_export_wait import ExportWaiter, OutcomeKind
from qianfan_export_wait.download import Downloader
from qianfan_export_wait.errors import ChecksumError
from qianfan_export_wait.simulator import DownloadFaultRates
from qianfan_export_wait.testing import SimulatedQianfan, fast_policy, simulated_qianfan

# The waiter fetching files itself (downloader=) is deprecated; these test it still.
pytestmark = pytest.mark.filterwarnings("ignore:ExportWaiter\\(downloader=:DeprecationWarning")

FAST = fast_policy()
SIZE = 200_000


def size_of(path: str) -> int:
    return Path(path).stat().st_size


def files_named(folder: Path, pattern: str) -> list[Path]:
    return list(folder.rglob(pattern))


def downloader(fake: SimulatedQianfan, dest: Path, **options: Any) -> Downloader:
    options.setdefault("retry_wait", wait_none())
    return Downloader(dest, credentials=fake.credentials, bos_endpoint=fake.base_url, **options)


async def test_each_done_export_arrives_with_its_verified_file(tmp_path: Path) -> None:
    async with simulated_qianfan(
        exports=30, max_seconds=1.0, fail_ratio=0.2, seed=4, file_sizes=(SIZE, SIZE)
    ) as fake:
        async with fake.client() as client, downloader(fake, tmp_path) as files:
            async with ExportWaiter(client, policy=FAST, downloader=files) as waiter:
                report = await waiter.wait_all(range(1, 31))
        digests = {i: fake.simulator.file_of(i).digest().sha256_hex for i in range(1, 31)}
    assert len(report.failed) == 6 and len(report.done) == 24
    for outcome in report.done:
        assert outcome.file is not None and outcome.download_error is None
        assert outcome.file.sha256 == digests[outcome.export_id]  # type: ignore[index]
        assert size_of(outcome.file.path) == SIZE
    assert all(outcome.file is None for outcome in report.failed)


async def test_a_failed_download_leaves_the_outcome_done_with_the_error(tmp_path: Path) -> None:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as fake:
        fake.configure(download_faults=DownloadFaultRates(wrong_md5=1.0))
        export = fake.add_export(finish_after=0.0)
        async with fake.client() as client, downloader(fake, tmp_path, max_attempts=2) as files:
            async with ExportWaiter(client, policy=FAST, downloader=files) as waiter:
                outcome = await waiter.submit(export.export_id)
    assert outcome.kind is OutcomeKind.DONE
    assert outcome.file is None
    assert isinstance(outcome.download_error, ChecksumError)
    assert files_named(tmp_path, "*.part") == []


async def test_a_refused_link_is_replaced_by_a_status_request_within_the_rate_limit(
    tmp_path: Path,
) -> None:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE), seed=2) as fake:
        fake.configure(download_faults=DownloadFaultRates(forbidden=0.5))
        ids = [fake.add_export(finish_after=0.0).export_id for _ in range(12)]
        async with fake.client() as client, downloader(fake, tmp_path) as files:
            async with ExportWaiter(client, policy=FAST, downloader=files, qps=50) as waiter:
                report = await waiter.wait_all(ids)
                requests = waiter.stats.requests
        refused = fake.stats.file_requests_by_outcome["forbidden"]
        at_server = fake.stats.total_requests
    assert all(outcome.file is not None for outcome in report.values())
    assert refused > 0
    polls = sum(outcome.polls for outcome in report.values())
    assert at_server == requests == polls + refused  # one fresh status per refused link


async def test_a_caller_that_leaves_cancels_its_download_and_nothing_is_left_running(
    tmp_path: Path,
) -> None:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE), slow_body_delay=5.0) as fake:
        fake.configure(download_faults=DownloadFaultRates(slow=1.0))
        export = fake.add_export(finish_after=0.0)
        async with fake.client() as client, downloader(fake, tmp_path) as files:
            async with ExportWaiter(client, policy=FAST, downloader=files) as waiter:
                handle = waiter.submit(export.export_id)
                for _ in range(200):
                    if waiter.stats.downloading:
                        break
                    await asyncio.sleep(0.01)
                assert waiter.stats.downloading == 1
                handle.cancel()
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if not waiter.stats.downloading:
                        break
                assert waiter.stats.downloading == 0
                assert waiter.stats.pending == 0
    assert not files_named(tmp_path, fake.simulator.file_of(export.export_id).name)
