"""The waiter's names where the first release kept them; they live in ``waiting/`` now."""

from .oneshot import wait_for_exports
from .ratelimit import AdaptiveRateLimiter, FixedRateLimiter, RateLimiter
from .waiting import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
    Clock,
    ExportHandle,
    ExportOutcome,
    ExportWaiter,
    MonotonicClock,
    OutcomeKind,
    OutcomeStream,
    PollPolicy,
    StateChange,
    VirtualClock,
    WaiterStats,
    WaitReport,
    WaitReportError,
)

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_UNAVAILABLE",
    "DEFAULT_MIN_DELAY",
    "DEFAULT_TIMEOUT",
    "AdaptiveRateLimiter",
    "Clock",
    "ExportHandle",
    "ExportOutcome",
    "ExportWaiter",
    "FixedRateLimiter",
    "MonotonicClock",
    "OutcomeKind",
    "OutcomeStream",
    "PollPolicy",
    "RateLimiter",
    "StateChange",
    "VirtualClock",
    "WaitReport",
    "WaitReportError",
    "WaiterStats",
    "wait_for_exports",
]
