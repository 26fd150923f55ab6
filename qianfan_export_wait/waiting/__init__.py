"""Waiting for many exports: the policy, the outcomes, a pure scheduling core, its asyncio
driver, and ``ExportWaiter``, the face of them all."""

from .clock import Clock, MonotonicClock, VirtualClock
from .outcomes import (
    ExportOutcome,
    OutcomeKind,
    StateChange,
    UpdateHook,
    WaiterEvent,
    WaiterStats,
    WaitReport,
    WaitReportError,
    kind_for_state,
)
from .policy import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
    PollPolicy,
)
from .run import wait_for_exports
from .waiter import POLICY_TIMEOUT, ExportHandle, ExportWaiter, OutcomeStream, StatusClient

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_UNAVAILABLE",
    "DEFAULT_MIN_DELAY",
    "DEFAULT_TIMEOUT",
    "POLICY_TIMEOUT",
    "Clock",
    "ExportHandle",
    "ExportOutcome",
    "ExportWaiter",
    "MonotonicClock",
    "OutcomeKind",
    "OutcomeStream",
    "PollPolicy",
    "StateChange",
    "StatusClient",
    "UpdateHook",
    "VirtualClock",
    "WaitReport",
    "WaitReportError",
    "WaiterEvent",
    "WaiterStats",
    "kind_for_state",
    "wait_for_exports",
]
