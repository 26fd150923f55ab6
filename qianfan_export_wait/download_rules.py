"""Moved to ``qianfan_export_wait.downloads.rules``; this name keeps working (every name of
the new module, its private ones too, is found here)."""

from __future__ import annotations

from typing import Any

from .downloads import rules as _home
from .downloads.rules import *  # noqa: F403
from .downloads.rules import __all__ as __all__


def __getattr__(name: str) -> Any:
    return getattr(_home, name)
