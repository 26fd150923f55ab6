"""Downloads beside the waiter: ``download_each`` over ``as_completed`` against the
simulator, the stage's ownership of its tasks, and ``waiter.refresh`` inside the limiter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import FakeDownloader
from tenacity import wait_none
from waiter_support import make_waiter

from qianfan_export_wait import ExportWaiter, OutcomeKind
from qianfan_export_wait.downloads import Downloaded, Downloader, DownloadStage, download_each
from qianfan_export_wait.errors import ChecksumError, ThrottledError, WaiterClosedError
from qianfan_export_wait.ratelimit import FixedRateLimiter, Reservation
from qianfan_export_wait.simulator import DownloadFaultRates
from qianfan_export_wait.testing import fast_policy, simulated_qianfan
from qianfan_export_wait.waiting.outcomes import ExportOutcome

SIZE = 50_000


def size_of(path: str) -> int:
    return Path(path).stat().st_size


async def test_download_each_hands_on_every_outcome_done_ones_with_their_verified_file(
    tmp_path: Path,
) -> None:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as fake:
        for export_type in ("local", "storage", "local"):
            fake.add_export(0.0, export_type=export_type)
        fake.add_export(0.0, fail=True)
        ids = [1, 2, 3, 4]
        async with fake.client() as client, ExportWaiter(client, policy=fast_policy()) as waiter:
            async with Downloader(
                tmp_path,
                credentials=client.credentials,
                bos_endpoint=fake.base_url,
                refresh=waiter.refresh,
                allow_insecure_http=True,
            ) as downloader:
                got = [done async for done in download_each(waiter.as_completed(ids), downloader)]
        digests = {n: fake.simulator.file_of(n).digest().sha256_hex for n in (1, 2, 3)}
    by_id = {done.outcome.export_id: done for done in got}
    assert sorted(by_id) == ids and len(got) == 4
    for n in (1, 2, 3):
        record = by_id[n].record
        assert record is not None and by_id[n].error is None
        assert record.sha256 == digests[n]
        assert size_of(record.path) == SIZE
    assert by_id[4].outcome.kind is OutcomeKind.FAILED
    assert (by_id[4].record, by_id[4].error, by_id[4].interrupted) == (None, None, False)


async def test_download_each_reports_a_failed_file_and_goes_on(tmp_path: Path) -> None:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as fake:
        fake.configure(download_faults=DownloadFaultRates(wrong_md5=1.0))
        fake.add_export(0.0)
        async with fake.client() as client, ExportWaiter(client, policy=fast_policy()) as waiter:
            async with Downloader(
                tmp_path, max_attempts=2, retry_wait=wait_none(), allow_insecure_http=True
            ) as downloader:
                [done] = [d async for d in download_each(waiter.as_completed([1]), downloader)]
    assert done.outcome.kind is OutcomeKind.DONE
    assert done.record is None and isinstance(done.error, ChecksumError)


def _held() -> FakeDownloader:
    """A downloader whose downloads wait until cancelled (its gate never opens)."""
    return FakeDownloader(gate=asyncio.Event())


async def outcomes_of(waiter: ExportWaiter, ids: list[int]) -> AsyncIterator[ExportOutcome]:
    async for outcome in waiter.as_completed(ids, timeout=None):
        yield outcome


async def test_leaving_download_each_early_stops_its_downloads_and_leaves_no_task() -> None:
    waiter, _, _ = make_waiter({1: ["Fail"], 2: ["Done"], 3: ["Done"]})
    held = _held()
    before = asyncio.all_tasks()
    async with waiter:
        each = download_each(outcomes_of(waiter, [1, 2, 3]), held, queued=4)  # type: ignore[arg-type]
        first = await anext(each)
        assert first.outcome.export_id == 1
        await held.until_started(2)
        await each.aclose()
    assert held.cancelled == 2
    assert asyncio.all_tasks() - before == set()


async def test_an_error_of_the_stream_is_raised_and_the_downloads_stop() -> None:
    waiter, _, _ = make_waiter({1: ["Done"]})
    held = _held()

    async def broken() -> AsyncIterator[ExportOutcome]:
        async for outcome in outcomes_of(waiter, [1]):
            yield outcome
        await held.until_started(1)
        raise RuntimeError("the stream broke")

    async with waiter:
        with pytest.raises(RuntimeError, match="the stream broke"):
            async for _ in download_each(broken(), held):  # type: ignore[arg-type]
                pass
    assert held.cancelled == 1


async def test_a_stage_cancelled_reports_each_file_interrupted() -> None:
    waiter, _, _ = make_waiter({1: ["Done"], 2: ["Done"]})
    held = _held()
    reported: list[Downloaded] = []
    async with waiter:
        stage = DownloadStage(held, reported.append, queued=2)  # type: ignore[arg-type]
        async for outcome in waiter.as_completed([1, 2]):
            await stage.submit(outcome)
        await stage.cancel()
    assert sorted(done.outcome.export_id for done in reported) == [1, 2]
    assert all(done.interrupted and done.record is None for done in reported)


@pytest.mark.parametrize("queued", [0, -1])
def test_a_stage_of_no_room_is_refused_naming_the_value(queued: int) -> None:
    with pytest.raises(ValueError, match=f"queued.*{queued}"):
        DownloadStage(_held(), print, queued=queued)  # type: ignore[arg-type]


# -- waiter.refresh: one status, inside the waiter's limiter -------------------------------


class _Recording(FixedRateLimiter):
    def __init__(self) -> None:
        super().__init__(1e6)
        self.reserved = 0
        self.throttled = 0

    def reserve(self, now: float) -> Reservation:
        self.reserved += 1
        return super().reserve(now)

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        self.throttled += 1
        super().on_throttle(now, ticket, retry_after)


async def test_refresh_asks_one_status_through_the_waiters_limiter() -> None:
    limiter = _Recording()
    waiter, client, _ = make_waiter({7: ["Done"]}, limiter=limiter)
    async with waiter:
        status = await waiter.refresh(7)
    assert status.export_id == 7
    assert (limiter.reserved, len(client.calls), waiter.stats.requests) == (1, 1, 1)


async def test_a_throttled_refresh_is_raised_and_told_to_the_limiter() -> None:
    limiter = _Recording()
    waiter, _, _ = make_waiter({7: [ThrottledError("slow down", retry_after=2.0)]}, limiter=limiter)
    async with waiter:
        with pytest.raises(ThrottledError):
            await waiter.refresh(7)
    assert limiter.throttled == 1


async def test_refresh_on_a_closed_waiter_or_of_a_bad_id_is_refused() -> None:
    waiter, client, _ = make_waiter({7: ["Done"]})
    with pytest.raises(ValueError, match="True"):
        await waiter.refresh(True)  # type: ignore[arg-type]
    await waiter.aclose()
    with pytest.raises(WaiterClosedError):
        await waiter.refresh(7)
    assert client.calls == []
