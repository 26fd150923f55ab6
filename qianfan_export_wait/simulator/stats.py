"""What the simulator saw: requests by outcome, polls per export, finish times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import FAULT_KINDS
from .exports import ExportTable
from .limits import RequestRateMeter

__all__ = ["OUTCOMES", "SimulatorStats"]

OUTCOMES = ("ok", "throttled", "auth_failed", "invalid", *FAULT_KINDS)
"""Every request to the status endpoint ends in exactly one of these.

``ok``: a status answer; ``throttled``: code 18; ``auth_failed``: HTTP 401;
``invalid``: code 500001 (unknown or malformed id); the fault kinds as in ``FaultRates``
(``slow`` counts a delayed request whatever its answer was).
"""


class SimulatorStats:
    """Live counters. ``polls_by_export`` counts status answers delivered per export.

    ``request_log``: ``None``, or after :meth:`keep_request_log` a ``(time, outcome)`` pair
    per request as its outcome is counted (the simulator's clock), for measuring rates in
    any window afterwards.
    """

    __slots__ = ("_clock", "_meter", "_table", "request_log", "requests_by_outcome")

    def __init__(self, table: ExportTable, clock: Callable[[], float]) -> None:
        self.requests_by_outcome: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.request_log: list[tuple[float, str]] | None = None
        self._table = table
        self._clock = clock
        self._meter = RequestRateMeter()

    def keep_request_log(self, enabled: bool = True) -> None:
        """Start (or stop and drop) logging each request's time and outcome."""
        self.request_log = [] if enabled else None

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.requests_by_outcome.items() if v)
        return f"SimulatorStats(total_requests={self.total_requests}, {counts or 'no requests'})"

    def reset(self) -> None:
        """Zero every counter, including the per-export poll counts."""
        self.requests_by_outcome = dict.fromkeys(OUTCOMES, 0)
        self._meter = RequestRateMeter()
        if self.request_log is not None:
            self.request_log = []
        for export in self._table:
            export.polls = 0

    def record_arrival(self) -> None:
        """Note a request's arrival for the peak-rate figure."""
        self._meter.note(self._clock())

    def record(self, outcome: str) -> None:
        """Count one request's outcome."""
        self.requests_by_outcome[outcome] += 1
        if self.request_log is not None:
            self.request_log.append((self._clock(), outcome))

    @property
    def total_requests(self) -> int:
        """Requests to the status endpoint so far."""
        return sum(self.requests_by_outcome.values())

    @property
    def peak_requests_per_second(self) -> int:
        """The most requests that arrived within any one second (all outcomes)."""
        return self._meter.peak

    @property
    def polls_by_export(self) -> dict[int, int]:
        """Status answers delivered per export id, for exports polled at least once."""
        return {export.export_id: export.polls for export in self._table if export.polls}

    @property
    def finished_at_by_export(self) -> dict[int, float]:
        """The monotonic time each terminal export became terminal."""
        now = self._clock()
        return {
            export.export_id: export.finish_at for export in self._table if export.finish_at <= now
        }

    def as_dict(
        self, *, include_exports: bool = False, include_requests: bool = False
    ) -> dict[str, Any]:
        """A JSON-able summary; per-export records only with ``include_exports``, the
        request log (``[[time, outcome], ...]``, empty unless kept) with
        ``include_requests``."""
        now = self._clock()
        polls = [export.polls for export in self._table]
        summary: dict[str, Any] = {
            "total_requests": self.total_requests,
            "requests_by_outcome": dict(self.requests_by_outcome),
            "peak_requests_per_second": self.peak_requests_per_second,
            "monotonic_now": now,
            "exports": {
                "total": len(polls),
                "by_state": self._table.count_by_state(now),
                "polled": sum(1 for count in polls if count),
                "total_polls": sum(polls),
                "max_polls": max(polls, default=0),
            },
        }
        if include_exports:
            summary["export_records"] = [export.summary_at(now) for export in self._table]
        if include_requests:
            summary["request_log"] = [list(entry) for entry in self.request_log or ()]
        return summary
