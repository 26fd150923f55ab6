"""Moved to the ``qianfan_export_wait.downloads`` package (``Downloader`` is in
``downloads.fetch``, the files on disk in ``downloads.files``); this name keeps working
(the names the old module held, its private ones too, are found here)."""

from __future__ import annotations

from typing import Any

from .downloads import fetch as _fetch
from .downloads import files as _files
from .downloads import records as _records
from .downloads.fetch import Downloader
from .downloads.files import _PartialFile, read_partial_note, verify_record_on_disk
from .downloads.records import DownloadProgress, DownloadRecord, ProgressHook, Refresh

__all__ = [
    "DownloadProgress",
    "DownloadRecord",
    "Downloader",
    "ProgressHook",
    "Refresh",
    "read_partial_note",
    "verify_record_on_disk",
]
_ = _PartialFile  # reached into by code written against the old module


def __getattr__(name: str) -> Any:
    for home in (_fetch, _files, _records):
        if hasattr(home, name):
            return getattr(home, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
