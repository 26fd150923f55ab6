"""Downloading Done exports' files from the simulator: layout, verification, resume,
refreshed links, faults, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tenacity import wait_none

from qianfan_export_wait import Credentials, ExportStatus, ExportStatusClient
from qianfan_export_wait.download import Downloader, DownloadProgress
from qianfan_export_wait.errors import (
    ChecksumError,
    DownloadSourceError,
    LinkExpiredError,
)
from qianfan_export_wait.simulator import DownloadFaultRates
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

SIZE = 300_000


@pytest.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as simulated:
        yield simulated


@pytest.fixture
async def client(fake: SimulatedQianfan) -> AsyncIterator[ExportStatusClient]:
    async with fake.client(max_attempts=1) as status_client:
        yield status_client


def _downloader(fake: SimulatedQianfan, dest: Path, **options: Any) -> Downloader:
    options.setdefault("retry_wait", wait_none())
    return Downloader(dest, credentials=fake.credentials, bos_endpoint=fake.base_url, **options)


async def _done(
    fake: SimulatedQianfan, client: ExportStatusClient, export_type: str = "local"
) -> ExportStatus:
    export = fake.add_export(finish_after=0, export_type=export_type)  # type: ignore[arg-type]
    return await client.get_status(export.export_id)


def _sha256(fake: SimulatedQianfan, status: ExportStatus) -> str:
    return fake.simulator.file_of(status.export_id).digest().sha256_hex


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _requests(fake: SimulatedQianfan, outcome: str) -> int:
    return fake.stats.file_requests_by_outcome[outcome]


async def test_local_export_lands_in_its_folder_with_the_right_sha256(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client, "local")
    async with _downloader(fake, tmp_path) as downloader:
        record = await downloader.download(status)
    name = fake.simulator.file_of(status.export_id).name
    assert record.path == str(tmp_path / str(status.export_id) / name)
    assert (record.bytes, record.sha256, record.fetched) == (SIZE, _sha256(fake, status), True)
    assert _files(tmp_path) == [f"{status.export_id}/{name}"]


async def test_storage_export_is_fetched_with_a_signed_get_object(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client, "storage")
    async with _downloader(fake, tmp_path) as downloader:
        record = await downloader.download(status)
    assert record.sha256 == _sha256(fake, status)
    assert (_requests(fake, "full"), _requests(fake, "auth_failed")) == (1, 0)


async def test_storage_export_with_another_accounts_keys_is_a_source_error(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client, "storage")
    stranger = Credentials("stranger-ak", "stranger-sk")
    async with Downloader(tmp_path, credentials=stranger, bos_endpoint=fake.base_url) as dl:
        with pytest.raises(DownloadSourceError, match="BOS refused") as caught:
            await dl.download(status)
    assert caught.value.http_status == 403
    assert _files(tmp_path) == []


async def test_client_download_returns_path_bytes_and_sha256(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client, "storage")
    record = await client.download(status, tmp_path, bos_endpoint=fake.base_url)
    assert set(record.to_dict()) == {"path", "bytes", "sha256"}
    assert record.to_dict()["sha256"] == _sha256(fake, status)


async def test_complete_file_is_not_fetched_again(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    async with _downloader(fake, tmp_path) as downloader:
        first = await downloader.download(status)
        second = await downloader.download(status)
    # The second asks only whether the file there is still the server's (HTTP 304).
    assert (_requests(fake, "full"), _requests(fake, "not_modified")) == (1, 1)
    assert fake.stats.file_bytes_sent == SIZE
    assert (second.fetched, second.sha256, second.path) == (False, first.sha256, first.path)


@pytest.mark.parametrize("fault", ["reset", "short_body"])
async def test_transfer_broken_mid_body_resumes_with_range_and_if_match(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path, fault: str
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(**{fault: 1.0}))

    def heal(progress: DownloadProgress) -> None:
        fake.configure(download_faults=DownloadFaultRates())

    async with _downloader(fake, tmp_path, on_progress=heal) as downloader:
        record = await downloader.download(status)
    assert record.sha256 == _sha256(fake, status)
    assert (_requests(fake, fault), _requests(fake, "partial")) == (1, 1)
    assert fake.stats.resumed_with_if_match == 1
    assert _files(tmp_path) == [str(Path(record.path).relative_to(tmp_path))]


async def test_refused_link_polls_a_fresh_status_then_succeeds(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(forbidden=1.0))
    refreshed: list[object] = []

    async def refresh(export_id: int | str) -> ExportStatus:
        refreshed.append(export_id)
        fake.configure(download_faults=DownloadFaultRates())
        return await client.get_status(export_id)

    async with _downloader(fake, tmp_path, refresh=refresh) as downloader:
        record = await downloader.download(status)
    assert refreshed == [status.export_id]
    assert record.sha256 == _sha256(fake, status)


async def test_link_expired_by_the_clock_is_replaced_before_it_is_tried(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    refreshed: list[object] = []

    async def refresh(export_id: int | str) -> ExportStatus:
        refreshed.append(export_id)
        return await client.get_status(export_id)

    def clock() -> float:  # an hour ahead until a fresh link was asked for
        return time.time() + (0 if refreshed else 3600)

    async with _downloader(fake, tmp_path, refresh=refresh, clock=clock) as downloader:
        await downloader.download(status)
    assert refreshed == [status.export_id]
    assert fake.stats.total_file_requests == 1


async def test_refused_link_without_refresh_is_link_expired_and_leaves_nothing(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(forbidden=1.0))
    async with _downloader(fake, tmp_path) as downloader:
        with pytest.raises(LinkExpiredError) as caught:
            await downloader.download(status)
    assert caught.value.export_id == status.export_id
    assert _files(tmp_path) == []


async def test_checksum_that_never_matches_is_an_error_and_leaves_no_file(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(wrong_md5=1.0))
    async with _downloader(fake, tmp_path, max_attempts=3) as downloader:
        with pytest.raises(ChecksumError, match="MD5"):
            await downloader.download(status)
    assert _requests(fake, "wrong_md5") == 3
    assert _files(tmp_path) == []


async def test_corrupted_body_is_fetched_again_from_the_first_byte(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(wrong_md5=1.0))

    def heal(progress: DownloadProgress) -> None:
        fake.configure(download_faults=DownloadFaultRates())

    async with _downloader(fake, tmp_path, on_progress=heal) as downloader:
        record = await downloader.download(status)
    assert record.sha256 == _sha256(fake, status)
    assert (_requests(fake, "wrong_md5"), _requests(fake, "full")) == (1, 1)


async def test_export_that_is_not_done_has_nothing_to_download(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    export = fake.add_export(finish_after=None)
    status = await client.get_status(export.export_id)
    async with _downloader(fake, tmp_path) as downloader:
        with pytest.raises(DownloadSourceError, match="not Done"):
            await downloader.download(status)
    assert fake.stats.total_file_requests == 0


async def test_cancelled_download_leaves_a_partial_that_the_next_run_resumes(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(slow=1.0), slow_body_delay=2.0)
    first_piece = asyncio.Event()
    async with _downloader(fake, tmp_path, on_progress=lambda _: first_piece.set()) as dl:
        task = asyncio.ensure_future(dl.download(status))
        await first_piece.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    fake.configure(download_faults=DownloadFaultRates())
    assert any(name.endswith(".part") for name in _files(tmp_path))
    async with _downloader(fake, tmp_path) as downloader:
        record = await downloader.download(status)
    assert record.sha256 == _sha256(fake, status)
    assert fake.stats.resumed_with_if_match == 1
    assert _files(tmp_path) == [str(Path(record.path).relative_to(tmp_path))]


async def test_no_more_files_stream_at_once_than_the_concurrency_bound(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    statuses = [await _done(fake, client) for _ in range(8)]
    fake.configure(download_faults=DownloadFaultRates(slow=1.0), slow_body_delay=0.05)
    async with _downloader(fake, tmp_path, max_concurrency=2) as downloader:
        await asyncio.gather(*(downloader.download(status) for status in statuses))
    assert fake.stats.peak_files_in_flight == 2


async def test_progress_hook_sees_every_byte(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    seen: list[DownloadProgress] = []
    async with _downloader(fake, tmp_path, on_progress=seen.append) as downloader:
        await downloader.download(status)
    assert sum(progress.received for progress in seen) == SIZE
    assert (seen[-1].done, seen[-1].total) == (SIZE, SIZE)


async def test_extract_unpacks_a_zip_export_beside_it(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    statuses = [await _done(fake, client) for _ in range(3)]
    status = next(s for s in statuses if (s.export_path or "").endswith(".zip"))
    async with _downloader(fake, tmp_path, extract=True) as downloader:
        record = await downloader.download(status)
    assert record.extracted_to is not None
    assert [name[-4:] for name in _files(Path(record.extracted_to))] == [".csv"]


async def test_download_error_is_a_json_object_naming_the_reason(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    fake.configure(download_faults=DownloadFaultRates(wrong_md5=1.0))
    async with _downloader(fake, tmp_path, max_attempts=1) as downloader:
        with pytest.raises(ChecksumError) as caught:
            await downloader.download(status)
    described = caught.value.to_dict()
    assert (described["type"], described["reason"]) == ("ChecksumError", "checksum")
    assert str(status.export_id) in str(caught.value)


def test_downloader_repr_hides_the_secret_key() -> None:
    secret = "sk-do-not-show-0123456789"
    downloader = Downloader("/tmp/x", credentials=Credentials("ak-visible", secret))
    assert secret not in repr(downloader)
