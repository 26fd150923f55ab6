"""``DownloadStage``: each Done export's file fetched while the waiting goes on, a bounded
number at a time, its line reported when the file is in place or has failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..download import Downloader
from ..errors import DownloadError
from ..waiting.outcomes import ExportOutcome

__all__ = ["DownloadStage", "interrupted_download"]

logger = logging.getLogger("qianfan_export_wait")

Report = Callable[[ExportOutcome, dict[str, Any]], None]
"""Called with the outcome and ``{"file": ...}`` or ``{"download_error": ...}``."""


def interrupted_download() -> dict[str, Any]:
    """The ``download_error`` of a file the run was interrupted before it was in place
    (a later ``--resume`` fetches it; a partial file is resumed, not restarted)."""
    return {
        "type": "Interrupted",
        "reason": "interrupted",
        "message": "interrupted before the file was in place",
        "http_status": None,
        "code": None,
    }


class DownloadStage:
    """Owns one task per file being fetched; at most ``queued`` exist at once (the
    ``Downloader`` runs ``max_concurrency`` of them at a time), so ``submit`` waits
    when the downloads fall behind the waiting."""

    def __init__(self, downloader: Downloader, report: Report, *, queued: int) -> None:
        self._downloader = downloader
        self._report = report
        self._room = asyncio.Semaphore(queued)
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()

    async def submit(self, outcome: ExportOutcome) -> None:
        """Start fetching ``outcome``'s file (a Done export's)."""
        await self._room.acquire()
        task = asyncio.ensure_future(self._fetch(outcome))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, outcome))

    def _finished(self, task: asyncio.Task[dict[str, Any]], outcome: ExportOutcome) -> None:
        # Reported here, so a download cancelled even before it started has its line too.
        self._tasks.discard(task)
        self._room.release()
        if task.cancelled():
            self._report(outcome, {"download_error": interrupted_download()})
            return
        error = task.exception()
        if error is None:
            self._report(outcome, task.result())
            return
        logger.error("download of export %r failed: %r", outcome.export_id, error)
        self._report(
            outcome,
            {
                "download_error": {
                    "type": type(error).__name__,
                    "reason": "unexpected",
                    "message": str(error),
                    "http_status": None,
                    "code": None,
                }
            },
        )

    async def _fetch(self, outcome: ExportOutcome) -> dict[str, Any]:
        assert outcome.status is not None
        try:
            record = await self._downloader.download(outcome.status)
        except DownloadError as error:
            logger.error("download of export %r failed: %s", outcome.export_id, error)
            return {"download_error": error.to_dict()}
        return {"file": record.to_dict()}

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
