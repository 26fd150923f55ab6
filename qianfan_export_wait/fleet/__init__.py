"""A rate limit shared by every process of one account, on Redis (the ``redis`` extra).

::

    async with limiter_from_url("redis://127.0.0.1:6379/0", access_key=ak, qps=55) as limiter:
        waiter = ExportWaiter(client, limiter=limiter)

Each reservation is one atomic script on Redis's own clock (``model.FLEET_SCRIPT``): GCRA
books the next slot of the fleet and answers the exact delay, so the caller sleeps once and
never retries. ``qps=None`` shares the adaptive limiter's state (slow start, cut on a
throttle, probing) among all replicas. Successes ride along with the next reservation;
throttles, heartbeats and the replica's goodbye are sent by tasks the limiter owns and
stops in :meth:`RedisRateLimiter.aclose`.

Joining the fleet (``async with``, or the first reservation) must reach Redis: a URL whose
Redis does not answer raises :class:`FleetUnreachableError`, one that refuses the URL's
credentials :class:`FleetAuthError`, so a typo never leaves a replica silently alone.
When Redis stops answering later, within ``timeout``, the limiter falls back to a local limiter at
its share of the last shared rate (that rate over the live replicas, from heartbeats),
warns once on the ``qianfan_export_wait`` logger, and goes back to the shared limit when a
heartbeat gets through again. Importing this package does not import ``redis``.

The modules: ``model`` (the script and its pure Python mirror), ``urls`` (errors at start,
URL masking), ``limiter`` (``RedisRateLimiter``) and ``setup`` (``limiter_from_url``,
``fleet_limiter``); ``redis_limit`` is the old name of them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .limiter import RedisRateLimiter
    from .model import AdaptiveParams, fleet_key
    from .setup import fleet_limiter, limiter_from_url
    from .urls import (
        REDIS_URL_ENV,
        FleetAuthError,
        FleetStartError,
        FleetUnreachableError,
        mask_url,
    )

_HOMES = {
    "REDIS_URL_ENV": "urls",
    "AdaptiveParams": "model",
    "FleetAuthError": "urls",
    "FleetStartError": "urls",
    "FleetUnreachableError": "urls",
    "RedisRateLimiter": "limiter",
    "fleet_key": "model",
    "fleet_limiter": "setup",
    "limiter_from_url": "setup",
    "mask_url": "urls",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
