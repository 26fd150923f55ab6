"""What a download hands back: the record of a verified file (defined with the other
plain records in ``models``, so the waiter can carry it), the progress of one piece, and
the shapes of the progress hook and of the link refresh."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..models import DownloadRecord, ExportId, ExportStatus

__all__ = ["DownloadProgress", "DownloadRecord", "ProgressHook", "Refresh"]


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """Passed to ``on_progress`` for each piece written: ``received`` bytes just now,
    ``done`` bytes of the file on disk, ``total`` its size when known."""

    export_id: ExportId
    received: int
    done: int
    total: int | None


ProgressHook = Callable[[DownloadProgress], None]
"""Called in the event loop for every piece of every file; keep it quick."""

Refresh = Callable[[ExportId], Awaitable[ExportStatus]]
"""A fresh status for an export (e.g. ``ExportStatusClient.get_status``), for a new link."""
