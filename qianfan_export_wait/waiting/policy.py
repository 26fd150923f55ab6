"""How often to poll one export and for how long: ``PollPolicy``, its defaults, and the
schedules that call tenacity strategies the way tenacity does. Pure code."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import Any, Final

from tenacity import RetryCallState, Retrying, wait_fixed, wait_none
from tenacity.wait import wait_base

from .._checks import check_count, check_number
from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_UNAVAILABLE",
    "DEFAULT_MIN_DELAY",
    "DEFAULT_TIMEOUT",
    "POLICY_TIMEOUT",
    "PollPolicy",
    "Schedule",
    "UsePolicyTimeout",
    "batch_window",
]

# The defaults, in one place for PollPolicy, ExportWaiter, wait_for_exports and the CLI.
DEFAULT_MIN_DELAY = 2.0
DEFAULT_MAX_DELAY = 60.0
DEFAULT_TIMEOUT = 3600.0
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MAX_UNAVAILABLE = 600.0
PROBE_MAX_DELAY = 5.0
"""During an outage, the single probe is sent at least this often."""


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How often to poll one export and for how long.

    ``wait`` is the poll schedule (any tenacity wait strategy; by default jittered
    exponential from ``min_delay`` to ``max_delay``); ``retry_wait`` paces retries after a
    transient error. ``timeout`` (seconds, or ``None`` for no deadline) applies to each
    caller's wait from its start. ``max_unavailable`` (seconds, or ``None``: only the
    deadline) is how long an export may go without any answer, through transient errors
    or an outage, before it ends as an ``error`` carrying ``ServiceUnavailableError``.
    ``max_consecutive_errors`` is deprecated: it ends an export after that many transient
    errors in a row, as the first release did.

    ``budget`` (requests per second) polls by a round-robin sweep instead of a schedule
    per export: the pending exports take turns, one poll every ``1/budget`` seconds, so
    each is polled every ``pending / budget`` seconds, never more often than
    ``min_delay``; the sweep speeds up as exports finish. The rate limiter still applies.
    """

    min_delay: float = DEFAULT_MIN_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    timeout: float | None = DEFAULT_TIMEOUT
    wait: wait_base | None = None
    retry_wait: wait_base | None = None
    max_consecutive_errors: int | None = None
    max_unavailable: float | None = DEFAULT_MAX_UNAVAILABLE
    budget: float | None = None

    def __post_init__(self) -> None:
        check_number("min_delay", self.min_delay)
        check_number("max_delay", self.max_delay)
        check_number("timeout", self.timeout, allow_none=True)
        check_number("max_unavailable", self.max_unavailable, allow_none=True)
        check_number("budget", self.budget, unit="requests per second", allow_none=True)
        if self.budget is not None and self.wait is not None:
            raise ConfigurationError(
                "budget= replaces the poll schedule; pass budget= or wait=, not both"
            )
        if self.max_delay < self.min_delay:
            raise ConfigurationError(
                f"max_delay ({self.max_delay}) must be >= min_delay ({self.min_delay})"
            )
        for name in ("wait", "retry_wait"):
            strategy = getattr(self, name)
            if strategy is not None and not callable(strategy):
                raise ConfigurationError(
                    f"{name} must be a tenacity wait strategy, got {strategy!r}"
                )
        if self.max_consecutive_errors is not None:
            check_count("max_consecutive_errors", self.max_consecutive_errors)
            warnings.warn(
                "PollPolicy(max_consecutive_errors=...) is deprecated: transient errors now "
                "end an export after max_unavailable seconds without an answer",
                DeprecationWarning,
                stacklevel=3,
            )

    def poll_strategy(self) -> wait_base:
        """The wait strategy between polls of one export (with a ``budget``: at least
        ``min_delay``, the rest is the sweep's pacing)."""
        if self.wait is not None:
            return self.wait
        if self.budget is not None:
            return wait_fixed(self.min_delay)
        return _jittered_exponential(self.min_delay, self.max_delay)

    def retry_strategy(self) -> wait_base:
        """The wait strategy after a transient error."""
        if self.retry_wait is not None:
            return self.retry_wait
        # Faults on single requests are mostly independent, so retry soon; the exponent
        # (reset by every answer) protects a server that keeps failing.
        return _jittered_exponential(min(self.min_delay, 0.1), self.max_delay)


def _jittered_exponential(low: float, high: float) -> wait_base:
    """``low`` plus a full-jitter exponential share, never past ``high``."""
    if high <= low:
        return wait_fixed(low)
    return _JitteredExponential(low, high)


class _JitteredExponential(wait_base):
    """Attempt ``n`` waits ``low + uniform(0, min(high - low, low * 2**(n-1)))``.

    The same draw as ``wait_fixed(low) + wait_random_exponential(multiplier=low,
    max=high - low)`` under tenacity 8 and 9 alike (the latter's ``min`` argument changed
    meaning in 9), in one call, since the waiter calls it once per poll.
    """

    def __init__(self, low: float, high: float) -> None:
        self.low = float(low)
        self.span = float(high) - self.low

    def __call__(self, retry_state: RetryCallState) -> float:
        exponent = retry_state.attempt_number - 1
        share = self.span if exponent > 1000 else self.low * 2.0**exponent
        if share > self.span:
            share = self.span
        return self.low + random.random() * share

    def __repr__(self) -> str:
        return f"<jittered exponential {self.low:g}-{self.low + self.span:g} s>"


_RETRYING = Retrying()
"""The ``retry_object`` of the states given to strategies (some read its statistics)."""

# Strategies known to read nothing but attempt_number: one reused state serves them.
_READS_ATTEMPT_ONLY = (_JitteredExponential, wait_fixed, wait_none)


class Schedule:
    """A tenacity wait strategy, called as tenacity calls it: with a real ``RetryCallState``
    whose ``attempt_number``, ``outcome`` and ``seconds_since_start`` are the export's, on
    the waiter's clock. Any ``wait_base`` works, including ones that read the outcome."""

    __slots__ = ("_cheap", "_state", "_strategy")

    def __init__(self, strategy: wait_base) -> None:
        self._strategy = strategy
        self._cheap = type(strategy) in _READS_ATTEMPT_ONLY
        self._state = RetryCallState(_RETRYING, None, (), {})

    def delay(
        self,
        attempt: int,
        *,
        started: float,
        now: float,
        result: Any = None,
        error: BaseException | None = None,
    ) -> float:
        """Seconds until the next try after try number ``attempt``, which ended at ``now``
        with ``result`` or ``error``."""
        if self._cheap:
            state = self._state
            state.attempt_number = attempt
        else:
            state = RetryCallState(_RETRYING, None, (), {})
            state.attempt_number = attempt
            if error is not None:
                state.set_exception((type(error), error, error.__traceback__))
            else:
                state.set_result(result)
            state.start_time = started
            state.outcome_timestamp = now
        delay = float(self._strategy(state))
        return delay if delay > 0.0 else 0.0


_MAX_BATCH_WINDOW = 0.05


def batch_window(policy: PollPolicy, granularity: float) -> float:
    """How late a poll may be sent so that polls falling due together share a wake-up:
    the clock's granularity, widened to 1/40 of the shortest delay of the default schedule
    (a custom ``wait`` gives no such bound to go by)."""
    if granularity <= 0.0 or policy.wait is not None:
        return max(granularity, 0.0)
    return max(granularity, min(policy.min_delay / 40.0, _MAX_BATCH_WINDOW))


class UsePolicyTimeout:
    """The type of ``POLICY_TIMEOUT``: "use the waiter's ``PollPolicy.timeout``"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the policy's timeout>"


POLICY_TIMEOUT: Final = UsePolicyTimeout()
"""The default ``timeout`` of every entry point: the waiter's ``PollPolicy.timeout``."""
