"""Moved to the ``qianfan_export_wait.fleet`` package; this name keeps working (every name
the old module held, its private ones too, is found here). Importing it does not import
``redis``."""

from __future__ import annotations

from typing import Any

from .fleet import limiter as _limiter
from .fleet import model as _model
from .fleet import setup as _setup
from .fleet import urls as _urls
from .fleet.limiter import RedisRateLimiter
from .fleet.model import AdaptiveParams, fleet_key
from .fleet.setup import fleet_limiter, limiter_from_url
from .fleet.urls import (
    INSTALL_HINT,
    REDIS_URL_ENV,
    FleetAuthError,
    FleetStartError,
    FleetUnreachableError,
    mask_url,
)

__all__ = [
    "REDIS_URL_ENV",
    "AdaptiveParams",
    "FleetAuthError",
    "FleetStartError",
    "FleetUnreachableError",
    "RedisRateLimiter",
    "fleet_key",
    "fleet_limiter",
    "limiter_from_url",
    "mask_url",
]
_ = INSTALL_HINT


def __getattr__(name: str) -> Any:
    for home in (_limiter, _setup, _urls, _model):
        if hasattr(home, name):
            return getattr(home, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
