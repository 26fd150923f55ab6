"""What a download hands back: the record of a verified file, the progress of one piece,
and the shapes of the progress hook and of the link refresh."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..models import ExportId, ExportStatus

__all__ = ["DownloadProgress", "DownloadRecord", "ProgressHook", "Refresh"]


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """A file on disk, verified: ``path``, ``bytes``, ``sha256`` (hex); ``fetched`` is
    ``False`` when it was already complete; ``extracted_to`` the folder a zip went to."""

    export_id: ExportId
    path: str
    bytes: int
    sha256: str
    fetched: bool = True
    extracted_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "bytes", "sha256"}`` (plus ``extracted_to`` when unpacked): the
        ``"file"`` object of a JSON line."""
        record: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.extracted_to is not None:
            record["extracted_to"] = self.extracted_to
        return record


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
