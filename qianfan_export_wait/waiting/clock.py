"""Where the waiter reads time and sleeps: the real monotonic clock, or a virtual one that
runs hours of schedule in milliseconds."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "MonotonicClock", "VirtualClock"]


class Clock(Protocol):
    """Where the waiter reads time and sleeps: swap it to run hours of schedule in ms.

    An optional ``granularity`` attribute (seconds) says how precisely it can wake; the
    waiter then sends polls that fall due within one such window together.
    """

    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""


class VirtualClock:
    """A clock for tests: ``sleep`` lets ready tasks run, then jumps time forward.

    With it, a one-hour poll schedule runs in milliseconds against an in-memory client.
    Its granularity is 0: polls go out exactly when due.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """The virtual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Yield to other tasks, then advance the virtual time by ``seconds``."""
        await asyncio.sleep(0)
        self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move the virtual time forward by ``seconds`` without sleeping."""
        self._now += max(0.0, seconds)


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``.

    ``granularity``: the least batching window. Polls due within one window are sent
    together, up to one window after they fall due, since an event loop wakes no more
    precisely than that and each wake-up of an idle process costs CPU. The default poll
    schedule widens the window to ``min_delay / 40`` (at most 50 ms).
    """

    granularity = 0.005

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)
