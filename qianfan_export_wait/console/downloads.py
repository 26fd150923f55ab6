"""``DownloadStage`` for the command line: the library's stage (``downloads.stage``),
each file's result given as the fields of its JSON line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..downloads import stage
from ..downloads.fetch import Downloader
from ..errors import DownloadError
from ..waiting.outcomes import ExportOutcome

__all__ = ["DownloadStage", "interrupted_download"]

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


def line_fields(done: stage.Downloaded) -> dict[str, Any]:
    """``{"file": ...}`` or ``{"download_error": ...}`` for a file's JSON line."""
    if done.record is not None:
        return {"file": done.record.to_dict()}
    error = done.error
    if isinstance(error, DownloadError):
        return {"download_error": error.to_dict()}
    if error is None:
        return {"download_error": interrupted_download()}
    return {
        "download_error": {
            "type": type(error).__name__,
            "reason": "unexpected",
            "message": str(error),
            "http_status": None,
            "code": None,
        }
    }


class DownloadStage(stage.DownloadStage):
    """The library's ``DownloadStage`` reporting ``report(outcome, fields)``."""

    def __init__(self, downloader: Downloader, report: Report, *, queued: int) -> None:
        super().__init__(
            downloader, lambda done: report(done.outcome, line_fields(done)), queued=queued
        )
