"""The simulator's QPS window and fault draw. Pure arithmetic: callers pass the time and
own the random generator."""

from __future__ import annotations

import math
import random
from collections import deque

from .config import DownloadFaultRates, FaultRates, QpsWindowKind

__all__ = ["FaultPicker", "QpsWindow", "RequestRateMeter"]

_WINDOW_SECONDS = 1.0


class QpsWindow:
    """Accepts at most ``limit`` requests per window of ``seconds`` (default 1).

    ``"sliding"``: never more than ``limit`` accepted requests within any one window.
    ``"fixed"``: at most ``limit`` per whole window of the clock (bursts of up to twice
    ``limit`` can straddle a boundary, as with many real gateways).
    Rejected requests do not count.
    """

    __slots__ = ("_accepted", "_fixed_count", "_fixed_window", "kind", "limit", "seconds")

    def __init__(
        self, limit: int, kind: QpsWindowKind = "sliding", *, seconds: float = _WINDOW_SECONDS
    ) -> None:
        if limit < 1 or not seconds > 0:
            raise ValueError(f"need limit >= 1 and seconds > 0, got {limit!r}, {seconds!r}")
        self.limit = limit
        self.kind: QpsWindowKind = kind
        self.seconds = seconds
        self._accepted: deque[float] = deque()
        self._fixed_window = -math.inf
        self._fixed_count = 0

    @classmethod
    def for_rate(cls, qps: float, kind: QpsWindowKind = "sliding") -> QpsWindow:
        """A window for ``qps`` requests per second: ``floor(qps)`` per second when
        ``qps >= 1``, else one request per ``1/qps`` seconds."""
        if qps >= 1:
            return cls(math.floor(qps), kind)
        return cls(1, kind, seconds=1.0 / qps)

    def try_acquire(self, now: float) -> bool:
        """Count one request at ``now`` if the limit allows it; say whether it did."""
        if self.kind == "fixed":
            window = math.floor(now / self.seconds)
            if window != self._fixed_window:
                self._fixed_window, self._fixed_count = window, 0
            if self._fixed_count >= self.limit:
                return False
            self._fixed_count += 1
            return True
        accepted = self._accepted
        while accepted and accepted[0] <= now - self.seconds:
            accepted.popleft()
        if len(accepted) >= self.limit:
            return False
        accepted.append(now)
        return True


class RequestRateMeter:
    """Tracks the most requests seen within any one-second sliding window."""

    __slots__ = ("_recent", "peak")

    def __init__(self) -> None:
        self._recent: deque[float] = deque()
        self.peak = 0

    def note(self, now: float) -> None:
        """Record one request at ``now``."""
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - _WINDOW_SECONDS:
            recent.popleft()
        self.peak = max(self.peak, len(recent))


class FaultPicker:
    """Maps exactly one draw of ``rng`` per request onto a fault kind or ``None``."""

    __slots__ = ("_bounds", "_rng")

    def __init__(self, rates: FaultRates | DownloadFaultRates, rng: random.Random) -> None:
        self._rng = rng
        self._bounds: list[tuple[float, str]] = []
        self.set_rates(rates)

    def set_rates(self, rates: FaultRates | DownloadFaultRates) -> None:
        """Use new rates from the next draw on."""
        bounds = []
        upper = 0.0
        for kind, rate in rates.as_dict().items():
            if rate > 0:
                upper += rate
                bounds.append((upper, kind))
        self._bounds = bounds

    def draw(self) -> str | None:
        """The fault for the next request, or ``None`` for a normal answer."""
        roll = self._rng.random()
        for upper, kind in self._bounds:
            if roll < upper:
                return kind
        return None
