"""Downloads beside the waiter: ``DownloadStage`` fetches the file of each Done outcome
handed to it, a bounded number at a time, and reports each as ``Downloaded``;
``download_each`` does it for every outcome of a stream such as ``waiter.as_completed``::

    async with ExportWaiter(client) as waiter, Downloader("exports",
            credentials=client.credentials, refresh=waiter.refresh) as downloader:
        async for done in download_each(waiter.as_completed(ids), downloader):
            print(done.outcome.export_id, done.record or done.error)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._checks import check_count
from ..errors import DownloadError
from ..waiting.outcomes import ExportOutcome, OutcomeKind
from .records import DownloadRecord

if TYPE_CHECKING:
    from .fetch import Downloader

__all__ = ["DownloadStage", "Downloaded", "download_each"]

logger = logging.getLogger("qianfan_export_wait")


@dataclass(frozen=True, slots=True)
class Downloaded:
    """One outcome after the stage: ``record`` when its file is in place, ``error`` when
    fetching it failed (a ``DownloadError``, or any other exception a bug raised),
    ``interrupted`` when the stage was stopped first; all empty for an outcome that is
    not Done (nothing to fetch)."""

    outcome: ExportOutcome
    record: DownloadRecord | None = None
    error: Exception | None = None
    interrupted: bool = False


class DownloadStage:
    """Owns one task per file being fetched; at most ``queued`` exist at once (the
    ``Downloader`` runs ``max_concurrency`` of them at a time), so ``submit`` waits when
    the downloads fall behind. ``on_done`` is called once per file submitted, in the
    event loop, when it is in place, has failed or was interrupted."""

    def __init__(
        self, downloader: Downloader, on_done: Callable[[Downloaded], None], *, queued: int
    ) -> None:
        check_count("queued", queued)
        self._downloader = downloader
        self._on_done = on_done
        self._room = asyncio.Semaphore(queued)
        self._tasks: set[asyncio.Task[DownloadRecord]] = set()

    async def submit(self, outcome: ExportOutcome) -> None:
        """Start fetching ``outcome``'s file (a Done export's)."""
        if outcome.status is None:
            raise ValueError(f"export {outcome.export_id!r} has no status: it is not Done")
        await self._room.acquire()
        task = asyncio.create_task(self._downloader.download(outcome.status))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, outcome))

    def _finished(self, task: asyncio.Task[DownloadRecord], outcome: ExportOutcome) -> None:
        # Reported here, so a download cancelled even before it started has its report too.
        self._tasks.discard(task)
        self._room.release()
        if task.cancelled():
            self._on_done(Downloaded(outcome, interrupted=True))
            return
        error = task.exception()
        if error is None:
            self._on_done(Downloaded(outcome, record=task.result()))
            return
        if isinstance(error, DownloadError):
            logger.error("download of export %r failed: %s", outcome.export_id, error)
        else:
            logger.error("download of export %r failed: %r", outcome.export_id, error)
        assert isinstance(error, Exception)
        self._on_done(Downloaded(outcome, error=error))

    async def join(self) -> None:
        """Wait until every file submitted is in place or has failed."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def cancel(self) -> None:
        """Stop every download now; each reports itself as interrupted."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


_END = object()


async def download_each(
    outcomes: AsyncIterable[ExportOutcome], downloader: Downloader, *, queued: int = 16
) -> AsyncIterator[Downloaded]:
    """Every outcome of ``outcomes`` as ``Downloaded``: a Done one once its file is in
    place or has failed, any other at once; at most ``queued`` taken from the stream and
    not yet handed on. Leaving the loop early stops the downloads still going (their
    partial files are kept for a later resume); an error of the stream is raised."""
    check_count("queued", queued)
    results: asyncio.Queue[Downloaded | object] = asyncio.Queue()
    room = asyncio.Semaphore(queued)
    stage = DownloadStage(downloader, results.put_nowait, queued=queued)

    async def feed() -> None:
        async for outcome in outcomes:
            await room.acquire()
            if outcome.kind is OutcomeKind.DONE:
                await stage.submit(outcome)
            else:
                results.put_nowait(Downloaded(outcome))
        await stage.join()

    feeder = asyncio.create_task(feed())
    feeder.add_done_callback(lambda _: results.put_nowait(_END))
    try:
        while (item := await results.get()) is not _END:
            assert isinstance(item, Downloaded)
            room.release()
            yield item
        error = None if feeder.cancelled() else feeder.exception()
        if error is not None:
            raise error
    finally:
        feeder.cancel()
        await stage.cancel()
        await asyncio.wait([feeder])
