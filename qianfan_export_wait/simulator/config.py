"""The simulator's knobs: fault rates and the rest of its configuration. Pure data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["FAULT_KINDS", "FaultRates", "QpsWindowKind", "SimulatorConfig"]

FAULT_KINDS = ("http_500", "reset", "truncated", "code_336100", "slow")
"""The injectable faults, in the order one random draw is mapped onto them."""

QpsWindowKind = Literal["sliding", "fixed"]


def _check_number(name: str, value: object, *, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability of each injected fault per request that passes auth and the QPS limit.

    ``http_500``: HTTP 500 with a plain-text body; ``reset``: the connection is aborted
    (RST) without an answer; ``truncated``: HTTP 200 whose JSON body is cut off (with an
    honest ``Content-Length``); ``code_336100``: HTTP 200 ``{"error_code": 336100}``;
    ``slow``: the normal answer after ``SimulatorConfig.slow_delay`` seconds.
    The rates must add up to at most 1.
    """

    http_500: float = 0.0
    reset: float = 0.0
    truncated: float = 0.0
    code_336100: float = 0.0
    slow: float = 0.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            _check_number(f"fault rate {kind}", getattr(self, kind), low=0.0, high=1.0)
        if self.total > 1.0 + 1e-9:
            raise ConfigurationError(f"fault rates add up to {self.total:g}; at most 1 allowed")

    @classmethod
    def even(cls, total: float) -> FaultRates:
        """A combined rate ``total`` split evenly across the five fault kinds."""
        share = _check_number("combined fault rate", total, low=0.0, high=1.0) / len(FAULT_KINDS)
        return cls(**dict.fromkeys(FAULT_KINDS, share))

    @property
    def total(self) -> float:
        """The probability that a request meets some fault."""
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, float]:
        """The rates by fault kind."""
        return {kind: float(getattr(self, kind)) for kind in FAULT_KINDS}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything about the simulator but its exports and credentials.

    ``seed`` makes export schedules, fault draws and log ids reproducible. ``qps`` caps
    accepted requests per second (``None``: no cap) on ``qps_window`` windows:
    ``"sliding"`` (never more than ``qps`` in any one second) or ``"fixed"`` (per whole
    second). A fractional ``qps`` of 1 or more is rounded down; below 1 it allows one
    request per ``1/qps`` seconds. ``retry_after`` adds a ``Retry-After`` header
    (seconds) to throttled answers.
    ``clock_skew`` shifts the simulator's wall clock (signature window and ``Date``
    header) by that many seconds. ``max_future_seconds`` is how far a signature's
    timestamp may lie ahead of the simulator's clock.
    """

    seed: int = 0
    qps: float | None = None
    faults: FaultRates = field(default_factory=FaultRates)
    slow_delay: float = 2.0
    retry_after: float | None = None
    clock_skew: float = 0.0
    qps_window: QpsWindowKind = "sliding"
    max_future_seconds: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigurationError(f"seed must be an int, got {self.seed!r}")
        if self.qps is not None:
            _check_number("qps", self.qps, low=1e-3, high=1e9)
        if not isinstance(self.faults, FaultRates):
            raise ConfigurationError(f"faults must be a FaultRates, got {self.faults!r}")
        _check_number("slow_delay", self.slow_delay, low=0.0, high=3600.0)
        if self.retry_after is not None:
            _check_number("retry_after", self.retry_after, low=0.0, high=3600.0)
        _check_number("clock_skew", self.clock_skew, low=-86400.0, high=86400.0)
        if self.qps_window not in ("sliding", "fixed"):
            raise ConfigurationError(
                f"qps_window must be 'sliding' or 'fixed', got {self.qps_window!r}"
            )
        _check_number("max_future_seconds", self.max_future_seconds, low=0.0)

    def as_dict(self) -> dict[str, object]:
        """The configuration as a JSON-able dict."""
        return asdict(self)
