"""Request-rate limiters shared by every poll of a waiter. Pure arithmetic: the caller passes
the time in and sleeps for the delay it gets back.

* :class:`FixedRateLimiter` spaces requests ``1/qps`` apart, so no one-second window ever
  holds more than ``qps`` of them.
* :class:`CappedRateLimiter` is what ``qps=Q`` means: never more than ``Q`` in any
  one-second window, and below ``Q`` by the adaptive rules while the server throttles.
* :class:`AdaptiveRateLimiter` finds the account's limit by itself: it starts low, grows
  exponentially while the limiter is the bottleneck and requests succeed (slow start),
  and on a throttle answer estimates the limit from the rate that was accepted, cuts back
  multiplicatively, then climbs quickly to just under the estimate and probes slowly
  above it (AIMD with a remembered ceiling, as TCP CUBIC remembers ``W_max``).
"""

from __future__ import annotations

import collections
import math
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "AdaptiveRateLimiter",
    "AsyncRateLimiter",
    "CappedRateLimiter",
    "FixedRateLimiter",
    "RateLimiter",
    "Reservation",
]


class Reservation(NamedTuple):
    """A send slot: wait ``delay`` seconds, then send; report back with ``ticket``."""

    delay: float
    ticket: int


@runtime_checkable
class RateLimiter(Protocol):
    """What the waiter needs from a limiter."""

    @property
    def rate(self) -> float:
        """The current allowed rate in requests per second."""

    def reserve(self, now: float) -> Reservation:
        """Book the next send slot at or after ``now``."""

    def on_success(self, now: float, ticket: int) -> None:
        """A request booked with ``ticket`` was not throttled."""

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """A request booked with ``ticket`` was throttled by the server."""


@runtime_checkable
class AsyncRateLimiter(Protocol):
    """A limiter whose reservation needs I/O, such as one shared by many processes.

    The waiter awaits ``areserve`` where it would call ``reserve``, then sleeps the
    reservation's delay; ``on_success`` and ``on_throttle`` stay synchronous (a limiter
    that must report them over the network does so in tasks it owns). A limiter that
    owns connections or tasks is closed by whoever made it, not by the waiter.
    """

    @property
    def rate(self) -> float:
        """The current allowed rate in requests per second."""

    async def areserve(self, now: float) -> Reservation:
        """Book the next send slot at or after ``now`` (the waiter's monotonic clock)."""

    def on_success(self, now: float, ticket: int) -> None:
        """A request booked with ``ticket`` was not throttled."""

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """A request booked with ``ticket`` was throttled by the server."""


class FixedRateLimiter:
    """At most ``qps`` requests in any one-second window, spaced evenly."""

    def __init__(self, qps: float) -> None:
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not qps > 0:
            raise ValueError(f"qps must be a number > 0, got {qps!r}")
        # A hair over 1/qps, so float rounding can never squeeze qps+1 sends into a second.
        self._interval = (1.0 + 1e-9) / float(qps)
        self._rate = float(qps)
        self._next_at = float("-inf")
        self._ticket = 0

    @property
    def rate(self) -> float:
        """The configured rate."""
        return self._rate

    def reserve(self, now: float) -> Reservation:
        """Book the next slot, ``1/qps`` after the previous one."""
        slot = now if now > self._next_at else self._next_at
        self._next_at = slot + self._interval
        self._ticket += 1
        return Reservation(slot - now, self._ticket)

    def on_success(self, now: float, ticket: int) -> None:
        """Nothing to learn: the rate is fixed."""

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """Honour ``Retry-After`` by holding every send until it has passed."""
        if retry_after is not None and retry_after > 0:
            self._next_at = max(self._next_at, now + retry_after)


class AdaptiveRateLimiter:
    """Finds and tracks the server's rate limit from throttle answers (slow start + AIMD).

    ``max_rate`` only bounds slow start on a server that never throttles. It is high on
    purpose: at a lower cap the limiter would space out a batch of polls that fell due
    together (at 5,000/s, 250 polls take 50 ms), waking the loop again and again for
    nothing, since no limit was ever seen.
    """

    def __init__(
        self,
        *,
        initial_rate: float = 20.0,
        min_rate: float = 1.0,
        max_rate: float = 50_000.0,
        doubling_period: float = 0.1,
        decrease_factor: float = 0.8,
        target_share: float = 0.95,
        approach_period: float = 0.5,
        probe_share_per_second: float = 0.01,
        early_tolerance: float = 0.005,
    ) -> None:
        if not 0 < min_rate <= initial_rate <= max_rate:
            raise ValueError("expected 0 < min_rate <= initial_rate <= max_rate")
        if not 0 < decrease_factor < 1 or not 0 < target_share <= 1:
            raise ValueError("decrease_factor must be in (0, 1) and target_share in (0, 1]")
        self._rate = float(initial_rate)
        self._min_rate = float(min_rate)
        self._max_rate = float(max_rate)
        self._doubling_period = doubling_period
        self._decrease_factor = decrease_factor
        self._target_share = target_share
        self._approach_period = approach_period
        self._probe_share = probe_share_per_second
        self._early_tolerance = early_tolerance
        self._ceiling: float | None = None
        self._next_at = float("-inf")
        self._ticket = 0
        self._last_cut_ticket = 0
        self._last_cut_at = float("-inf")
        self._last_grow_at: float | None = None
        self._blocked_at = float("-inf")
        self._accepted: collections.deque[float] = collections.deque()
        self.cuts = 0

    @property
    def rate(self) -> float:
        """The rate currently allowed."""
        return self._rate

    @property
    def ceiling(self) -> float | None:
        """The server's limit as last estimated, or ``None`` before the first throttle."""
        return self._ceiling

    def reserve(self, now: float) -> Reservation:
        """Book the next slot, ``1/rate`` after the previous one.

        A slot less than ``early_tolerance`` ahead is given as "send now": an event loop
        cannot sleep that briefly, and trying costs a wake-up per request. The booked
        timeline still advances ``1/rate`` per slot, so the long-run rate is kept.
        """
        if self._next_at > now:
            self._blocked_at = now
            slot = self._next_at
        else:
            slot = now
        # A hair over 1/rate, as FixedRateLimiter spaces its slots (see there).
        self._next_at = slot + (1.0 + 1e-9) / self._rate
        self._ticket += 1
        delay = slot - now
        return Reservation(0.0 if delay < self._early_tolerance else delay, self._ticket)

    def on_success(self, now: float, ticket: int) -> None:
        """Count the success and grow the rate while the limiter is the bottleneck."""
        accepted = self._accepted
        accepted.append(now)
        horizon = now - 1.0
        while accepted[0] <= horizon:  # the _trim_accepted loop, inline: once per request
            accepted.popleft()
        last = self._last_grow_at
        self._last_grow_at = now
        if last is None or now - self._blocked_at > 1.0:
            return
        elapsed = min(now - last, 1.0)
        if elapsed <= 0:
            return
        ceiling = self._ceiling
        if ceiling is None:
            rate = self._rate * 2.0 ** (elapsed / self._doubling_period)
        else:
            target = ceiling * self._target_share
            if self._rate < target * 0.99:
                rate = self._rate + (target - self._rate) * min(
                    1.0, elapsed / self._approach_period
                )
            else:
                # Probe gently at first, faster the longer no throttle comes (as CUBIC's
                # convex region does), so a stale low estimate cannot pin the rate down.
                quiet = (now - self._last_cut_at) / 10.0
                rate = self._rate + ceiling * self._probe_share * (1.0 + quiet * quiet) * elapsed
                if rate > ceiling * 1.2:
                    # 20% past the estimate with no throttle: the estimate is stale (the
                    # limit rose, or a neighbour stopped); search again by slow start.
                    self._ceiling = None
        self._rate = min(rate, self._max_rate)

    def _trim_accepted(self, now: float) -> collections.deque[float]:
        """The times of successes in the last second (older ones are dropped)."""
        accepted = self._accepted
        horizon = now - 1.0
        while accepted and accepted[0] <= horizon:
            accepted.popleft()
        return accepted

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """Cut the rate, at most once per batch of requests sent at the old rate."""
        if retry_after is not None and retry_after > 0:
            self._next_at = max(self._next_at, now + retry_after)
        accepted = self._trim_accepted(now)
        if accepted:
            # The server's last second is full: nothing can pass before the oldest request
            # it accepted in that second is a second old, so sending sooner only wastes.
            self._next_at = max(self._next_at, accepted[0] + 1.0)
        if ticket <= self._last_cut_ticket:
            return
        # What the server accepted in the last second is the best estimate of its limit.
        # Within an episode of throttles the estimate only falls (a window boundary can
        # make one reading too high); after a quiet spell a fresh reading may raise it.
        # With nothing accepted lately there is no reading: assume a plain cut.
        reading = float(len(accepted)) if accepted else self._rate * self._decrease_factor
        measured = max(reading, self._min_rate)
        if self._ceiling is None or now - self._last_cut_at > 2.0:
            self._ceiling = measured
        else:
            self._ceiling = min(self._ceiling, measured)
        cut = min(self._rate, self._ceiling) * self._decrease_factor
        self._rate = max(self._min_rate, cut)
        self._last_cut_ticket = self._ticket
        self._last_cut_at = now
        self._next_at = max(self._next_at, now + 1.0 / self._rate)
        self.cuts += 1


class CappedRateLimiter(AdaptiveRateLimiter):
    """At most ``qps`` requests in any one-second window, and fewer while the server
    throttles: starts at ``qps``; on a throttle cuts back and finds the share left to it
    by :class:`AdaptiveRateLimiter`'s rules, then climbs back to ``qps`` when throttles stop.

    ``knobs`` are ``AdaptiveRateLimiter``'s (``min_rate``, ``decrease_factor``, ...);
    the cap is ``qps`` whatever they say. No slot is given early (``early_tolerance`` is
    0), so the cap holds for the times the sends are made, not only the slots booked.
    """

    def __init__(self, qps: float, **knobs: float) -> None:
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not 0 < qps < math.inf:
            raise ValueError(f"qps must be a finite number > 0, got {qps!r}")
        for name in ("initial_rate", "max_rate", "early_tolerance"):
            if name in knobs:
                raise TypeError(f"CappedRateLimiter sets {name} itself (from qps)")
        knobs.setdefault("min_rate", min(1.0, float(qps)))
        super().__init__(initial_rate=float(qps), max_rate=float(qps), early_tolerance=0.0, **knobs)
        self.qps = float(qps)
