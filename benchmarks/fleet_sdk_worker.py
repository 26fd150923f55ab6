"""Run by the ``fleet`` suite in an interpreter that has the official ``qianfan`` SDK: one
replica of a fleet whose shared limit is the SDK's ``RedisRateLimiter``.

Everything else is this project's (``ExportWaiter``, client, schedule), so the suite
compares the limiters alone. The SDK's limiter evaluates its Lua token bucket and sleeps
the answer inside ``__aenter__``; it never hears of a throttle. Reads a JSON job from argv
(``ids``, ``base_url``, ``redis_host``, ``redis_port``, ``qps``, ``min_delay``,
``max_delay``), prints one JSON object: polls, outcomes by kind, wall time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from qianfan_export_wait.client import EXPORT_STATUS_PATH, ExportStatusClient
from qianfan_export_wait.ratelimit import Reservation
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS
from qianfan_export_wait.waiter import ExportWaiter, OutcomeKind, PollPolicy


class SdkRedisLimiter:
    """The SDK's ``RedisRateLimiter`` behind this project's limiter protocol."""

    def __init__(self, qps: float, host: str, port: int, key: str) -> None:
        from qianfan.resources.rate_limiter import (  # type: ignore[import-not-found,unused-ignore]
            RedisConnectionInfo,
            RedisRateLimiter,
        )

        self._sdk: Any = RedisRateLimiter(
            query_per_second=qps, redis_connection_info=RedisConnectionInfo(host=host, port=port)
        )
        self._sdk.acquire(key)  # the SDK keys on the request's URL
        self.rate = float(qps)
        self._ticket = 0

    async def areserve(self, now: float) -> Reservation:
        await self._sdk.__aenter__()  # one EVALSHA, then the SDK's own sleep
        self._ticket += 1
        return Reservation(0.0, self._ticket)

    def on_success(self, now: float, ticket: int) -> None:
        """The SDK learns nothing from an answer."""

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """Nor from a throttle."""


async def main(job: dict[str, Any]) -> dict[str, Any]:
    limiter = SdkRedisLimiter(
        job["qps"], job["redis_host"], job["redis_port"], job["base_url"] + EXPORT_STATUS_PATH
    )
    policy = PollPolicy(min_delay=job["min_delay"], max_delay=job["max_delay"], timeout=None)
    started = time.monotonic()
    async with ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=job["base_url"]) as client:
        waiter = ExportWaiter(client, policy=policy, limiter=limiter)
        report = await waiter.wait_all(job["ids"])
    outcomes = report.outcomes
    return {
        "polls": sum(outcome.polls for outcome in outcomes),
        "outcomes": {
            kind.value: sum(1 for o in outcomes if o.kind is kind) for kind in OutcomeKind
        },
        "wall_s": time.monotonic() - started,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
