"""Moved to ``qianfan_export_wait.fleet.model``; this name keeps working (every name of
the new module, its private ones too, is found here)."""

from __future__ import annotations

from typing import Any

from .fleet import model as _home
from .fleet.model import *  # noqa: F403
from .fleet.model import __all__ as __all__


def __getattr__(name: str) -> Any:
    return getattr(_home, name)
