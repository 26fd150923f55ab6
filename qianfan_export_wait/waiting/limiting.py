"""The one limiter interface the driver sees, adapted once from a ``RateLimiter`` (books
a slot at once) or an ``AsyncRateLimiter`` (books over I/O, awaited)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import ConfigurationError
from ..ratelimit import AsyncRateLimiter, RateLimiter, Reservation
from .clients import offers

__all__ = ["DriverLimiter"]


class DriverLimiter:
    """A limiter as the driver uses it. ``reserve_now`` books a slot without awaiting
    (``None`` for a limiter that must be awaited: use ``reserve``); ``on_success`` and
    ``on_throttle`` report each request's fate; ``rate`` is the rate allowed now."""

    __slots__ = ("_areserve", "limiter", "on_success", "on_throttle", "reserve_now")

    def __init__(self, limiter: RateLimiter | AsyncRateLimiter) -> None:
        self.limiter = limiter
        self.reserve_now: Callable[[float], Reservation] | None = None
        self._areserve: Callable[[float], Awaitable[Reservation]] | None = None
        # An async limiter is awaited even if it can also book at once (its booking is
        # the one shared with other processes).
        if offers(limiter, AsyncRateLimiter):
            self._areserve = limiter.areserve
        elif offers(limiter, RateLimiter):
            self.reserve_now = limiter.reserve
        else:
            raise ConfigurationError(
                "limiter must have rate, reserve(now) or async areserve(now), on_success "
                f"and on_throttle, got {type(limiter).__name__}"
            )
        self.on_success = limiter.on_success
        self.on_throttle = limiter.on_throttle

    @property
    def rate(self) -> float:
        """The rate the limiter allows now, in requests per second."""
        return self.limiter.rate

    async def reserve(self, now: float) -> Reservation:
        """Book the next send slot at or after ``now``."""
        areserve = self._areserve
        if areserve is not None:
            return await areserve(now)
        assert self.reserve_now is not None
        return self.reserve_now(now)
