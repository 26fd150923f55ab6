"""Waiting for many exports: the policy, the outcomes, a pure scheduling core, its asyncio
driver, and ``ExportWaiter``, the face of them all.

The promises, for any interleaving of callers (arriving, waiting, leaving, cancelled,
timing out) and answers (any state, throttles, errors, outages, slow answers); each is
checked after every step of ``tests/properties/test_waiter_model.py``:

1. Every caller gets exactly one outcome per export it asked for, unless it left first.
2. ``timeout`` means no terminal answer arrived before that caller's deadline and a last
   look was sent shortly before it (``LastLooks`` plans them so the rate limit carries
   them all); ``ExportOutcome.status_age`` says how old the status it carries is.
3. A caller joining an export whose last answer is older than ``min_delay`` gets a poll
   within ``min_delay`` (``Scheduler.join``).
4. At most ``max_in_flight`` requests in flight, none once no caller is left; tasks and
   tables return to their idle size; an export no caller wants is forgotten (one owner
   per poll, per download and per caller: the driver's ``Worker`` and ``TaskOwner``,
   each caller's ``Membership``).
5. Every entry point (``wait``, ``submit``, ``wait_all``, ``as_completed``) takes a
   deadline.
"""

from typing import Any

from .clients import StatusClient
from .clock import Clock, MonotonicClock, VirtualClock
from .handles import ExportHandle, OutcomeStream
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
    POLICY_TIMEOUT,
    PollPolicy,
    UsePolicyTimeout,
)
from .waiter import ExportWaiter

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
    "UsePolicyTimeout",
    "VirtualClock",
    "WaitReport",
    "WaitReportError",
    "WaiterEvent",
    "WaiterStats",
    "kind_for_state",
    "wait_for_exports",
]


def __getattr__(name: str) -> Any:
    """``wait_for_exports`` moved above ``waiting/`` (it makes a client): still found here,
    with a ``DeprecationWarning``."""
    if name == "wait_for_exports":
        import warnings

        from ..oneshot import wait_for_exports

        warnings.warn(
            "qianfan_export_wait.waiting.wait_for_exports moved: import it from "
            "qianfan_export_wait",
            DeprecationWarning,
            stacklevel=2,
        )
        return wait_for_exports
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
