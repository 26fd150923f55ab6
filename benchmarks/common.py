"""What every suite shares: the result record, targets, percentiles and probes."""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from qianfan_export_wait import ExportStatusClient
from qianfan_export_wait.client import BASE_URL_ENV
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS

__all__ = [
    "LoopLagProbe",
    "SuiteResult",
    "Target",
    "WakeCounter",
    "idle_wake_cpu",
    "make_client",
    "percentile",
    "sim_env",
    "summarize_lags",
]


@dataclass(slots=True)
class Target:
    """One figure checked against the issue's target: ``value`` must be ``op`` ``limit``."""

    name: str
    value: float
    limit: float
    unit: str
    op: str = "<="

    @property
    def holds(self) -> bool:
        """Whether the target is met."""
        if math.isnan(self.value):
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "op": self.op,
            "holds": self.holds,
        }


@dataclass(slots=True)
class SuiteResult:
    """What one suite measured: headline metrics (shown in the table), targets, notes,
    and raw series for plots (kept in the JSON too)."""

    name: str
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "metrics": self.metrics,
            "targets": [target.as_dict() for target in self.targets],
            "notes": self.notes,
            "series": self.series,
        }


def percentile(values: list[float], share: float) -> float:
    """The ``share`` (0..1) percentile by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_lags(lags: list[float]) -> dict[str, float]:
    """p50, p99 and max of detection lags, in seconds, rounded for the table."""
    return {
        "lag_p50_s": round(percentile(lags, 0.50), 3),
        "lag_p99_s": round(percentile(lags, 0.99), 3),
        "lag_max_s": round(max(lags), 3) if lags else math.nan,
    }


def sim_env(base_url: str) -> dict[str, str]:
    """This process's environment, with the simulator's credentials and endpoint: what a
    child process (the CLI, the official SDK) needs to talk to the simulator."""
    env = dict(os.environ)
    env.update(
        {
            BASE_URL_ENV: base_url,
            "QIANFAN_ACCESS_KEY": SIMULATOR_CREDENTIALS.access_key,
            "QIANFAN_SECRET_KEY": SIMULATOR_CREDENTIALS.secret_key,
        }
    )
    return env


def make_client(base_url: str, **options: Any) -> ExportStatusClient:
    """A library client for the simulator's credentials."""
    return ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=base_url, **options)


class LoopLagProbe:
    """Measures event-loop lag: a task sleeps ``interval`` seconds over and over and
    records how late each wake-up is."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.monotonic() - before - self.interval))

    def start(self) -> None:
        """Begin ticking on the running loop."""
        self._task = asyncio.ensure_future(self._tick())

    async def stop(self) -> dict[str, float]:
        """Stop and summarise: p50, p99 and max lag in milliseconds."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        return {
            "loop_lag_p50_ms": round(percentile(self.lags, 0.5) * 1000, 3),
            "loop_lag_p99_ms": round(percentile(self.lags, 0.99) * 1000, 3),
            "loop_lag_max_ms": round(max(self.lags, default=math.nan) * 1000, 3),
        }


class WakeCounter:
    """Counts the event loop's blocking waits: selector calls that may sleep (a timeout
    other than 0), each one a wake-up of an idle process when it ends."""

    def __init__(self) -> None:
        self.blocking = 0
        self._selector: Any = None

    def __enter__(self) -> WakeCounter:
        selector = getattr(asyncio.get_running_loop(), "_selector", None)
        if selector is not None:
            select = selector.select

            def counted(timeout: float | None = None) -> Any:
                if timeout is None or timeout > 0:
                    self.blocking += 1
                return select(timeout)

            selector.select = counted
            self._selector = selector
        return self

    def __exit__(self, *exc: object) -> None:
        if self._selector is not None:
            del self._selector.select  # the instance attribute; the method shows again
            self._selector = None


async def idle_wake_cpu(per_second: float, seconds: float) -> float:
    """CPU seconds per wake-up of this process when it does nothing but wake
    ``per_second`` times a second: the platform's price of a wake-up, the same for any
    program, to set beside a measured run."""
    interval = 1.0 / max(per_second, 1.0)
    wakes = 0
    cpu_started = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(interval)
        wakes += 1
    return (time.process_time() - cpu_started) / max(wakes, 1)
