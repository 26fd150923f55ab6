"""The driver's download tasks: one per ``Done`` export whose file a ``Downloader``
fetches before its outcome; each reports what became of the file as the export's answer
(``Downloaded``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from ..errors import DownloadError
from ..models import DownloadRecord, ExportId, ExportStatus
from .answers import CANCELLED, Downloaded
from .clock import Clock
from .core import Entry, Scheduler

__all__ = ["DownloadTasks", "FileFetcher"]


class FileFetcher(Protocol):
    """What ``ExportWaiter(downloader=...)`` calls: ``downloads.Downloader`` is one."""

    async def download(
        self,
        status: ExportStatus,
        *,
        refresh: Callable[[ExportId], Awaitable[ExportStatus]] | None = ...,
    ) -> DownloadRecord:
        """Fetch and verify ``status``'s file; raise only ``DownloadError``."""
        ...


logger = logging.getLogger("qianfan_export_wait")


Spawn = Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class DownloadTasks:
    """The download tasks in flight, by entry; each ends by reporting to ``core``."""

    __slots__ = ("_clock", "_core", "_downloader", "_ended", "_log", "_refresh", "tasks")

    def __init__(
        self,
        core: Scheduler,
        downloader: FileFetcher,
        *,
        clock: Clock,
        refresh: Callable[[ExportId], Awaitable[ExportStatus]],
        log_unexpected: Callable[[Exception, Entry], None],
        ended: Callable[[], None],
    ) -> None:
        self._core = core
        self._downloader = downloader
        self._clock = clock
        self._refresh = refresh
        self._log = log_unexpected
        self._ended = ended
        self.tasks: dict[Entry, asyncio.Task[None]] = {}

    def start(
        self, spawn: Spawn, loop: asyncio.AbstractEventLoop, entry: Entry, status: ExportStatus
    ) -> None:
        """Fetch the file of ``entry`` (``Done`` with ``status``) in a task ``spawn`` starts."""
        task = self.tasks[entry] = spawn(loop, self._download(entry, status))
        task.add_done_callback(lambda _: self._task_ended(entry, task))

    def _task_ended(self, entry: Entry, task: asyncio.Task[None]) -> None:
        """A download's task ended, however (cancelled before it ran, too): forget it."""
        if self.tasks.get(entry) is task:
            del self.tasks[entry]
        if task.cancelled():
            self._core.answer(entry, CANCELLED, self._clock.now())
        self._ended()

    async def _download(self, entry: Entry, status: ExportStatus) -> None:
        core = self._core
        clock = self._clock
        try:
            try:
                record = await self._downloader.download(status, refresh=self._refresh)
            except DownloadError as error:
                logger.warning(
                    "export %r is Done, but its file was not fetched: %s", entry.export_id, error
                )
                core.answer(entry, Downloaded(error=error), clock.now())
            else:
                core.answer(entry, Downloaded(record=record), clock.now())
        except Exception as error:  # a bug in the downloader: the export is Done anyway
            self._log(error, entry)
            failed = DownloadError(
                f"{type(error).__name__} while downloading: {error}", export_id=entry.export_id
            )
            core.answer(entry, Downloaded(error=failed), clock.now())
