"""What the simulator saw: requests by outcome, polls per export, finish times."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from .config import DOWNLOAD_FAULT_KINDS, FAULT_KINDS
from .evaluations import EvaluationTable, SimEvaluation
from .exports import ExportTable, SimExport
from .limits import RequestRateMeter

__all__ = ["CALLS", "FILE_OUTCOMES", "OUTCOMES", "SimulatorStats"]

OUTCOMES = ("ok", "throttled", "auth_failed", "invalid", *FAULT_KINDS, "not_served")
"""Every request to a console call (V1 or V2) ends in exactly one of these.

``ok``: an answer; ``throttled``: code 18 (V1) or HTTP 429 (V2); ``auth_failed``: HTTP
401/403; ``invalid``: code 500001 (V1) or HTTP 400/404 (V2), a malformed request or an
unknown id; the fault kinds as in ``FaultRates`` (``slow`` counts a delayed request
whatever its answer was); ``not_served``: HTTP 404, a generation the ``api`` setting
leaves out.
"""

CALLS = (
    "v1.export_status",
    "v1.evaluation_status",
    "v1.create_export",
    "v2.export_status",
    "v2.evaluation_status",
    "v2.create_export",
)
"""The calls counted in ``requests_by_call``: a generation and an operation."""

FILE_OUTCOMES = (
    "full",
    "partial",
    "not_modified",
    "precondition_failed",
    "unsatisfiable",
    "expired",
    "auth_failed",
    "not_found",
    *DOWNLOAD_FAULT_KINDS,
)
"""Every file request ends in exactly one of these.

``full``: HTTP 200 with the whole file; ``partial``: HTTP 206 for a ``Range``;
``not_modified``: HTTP 304, ``If-None-Match`` named the file's ETag;
``precondition_failed``: HTTP 412, ``If-Match`` named another ETag; ``unsatisfiable``:
HTTP 416; ``expired``: HTTP 403, the link's signature has expired; ``auth_failed``:
HTTP 403, a bad signature (link or BOS); ``not_found``: HTTP 404; the fault kinds as in
``DownloadFaultRates`` (``slow`` counts a slow body whatever its answer was).
"""


class SimulatorStats:
    """Live counters. ``polls_by_export`` counts status answers delivered per export.

    ``request_log``: ``None``, or after :meth:`keep_request_log` a ``(time, outcome)`` pair
    per request as its outcome is counted (the simulator's clock), for measuring rates in
    any window afterwards. ``requests_by_call`` counts the requests that reached a call
    (past authentication, the QPS limit and V2's ``Action``) by generation and operation.
    """

    __slots__ = (
        "_clock",
        "_evaluations",
        "_meter",
        "_table",
        "file_bytes_sent",
        "file_requests_by_export",
        "file_requests_by_outcome",
        "files_in_flight",
        "in_flight",
        "peak_files_in_flight",
        "peak_in_flight",
        "request_log",
        "requests_by_call",
        "requests_by_outcome",
        "resumed_with_if_match",
    )

    def __init__(
        self,
        table: ExportTable,
        clock: Callable[[], float],
        evaluations: EvaluationTable | None = None,
    ) -> None:
        self.requests_by_outcome: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.requests_by_call: dict[str, int] = dict.fromkeys(CALLS, 0)
        self._evaluations = evaluations if evaluations is not None else EvaluationTable(clock)
        self.request_log: list[tuple[float, str]] | None = None
        self._table = table
        self._clock = clock
        self._meter = RequestRateMeter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._reset_files()

    def _reset_files(self) -> None:
        self.file_requests_by_outcome: dict[str, int] = dict.fromkeys(FILE_OUTCOMES, 0)
        self.file_requests_by_export: Counter[int] = Counter()
        self.file_bytes_sent = 0
        self.files_in_flight = 0
        self.peak_files_in_flight = 0
        self.resumed_with_if_match = 0

    def keep_request_log(self, enabled: bool = True) -> None:
        """Start (or stop and drop) logging each request's time and outcome."""
        self.request_log = [] if enabled else None

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.requests_by_outcome.items() if v)
        return f"SimulatorStats(total_requests={self.total_requests}, {counts or 'no requests'})"

    def reset(self) -> None:
        """Zero every counter, including the per-export and per-evaluation poll and file
        request counts (not the exports created per evaluation: those are the server's
        state, not a count of requests)."""
        self.requests_by_outcome = dict.fromkeys(OUTCOMES, 0)
        self.requests_by_call = dict.fromkeys(CALLS, 0)
        for evaluation in self._evaluations:
            evaluation.polls = 0
        self._meter = RequestRateMeter()
        self.peak_in_flight = self.in_flight
        in_flight = self.files_in_flight
        self._reset_files()
        self.files_in_flight = in_flight
        if self.request_log is not None:
            self.request_log = []
        for export in self._table:
            export.polls = 0
            export.first_answered_at = None

    def record_arrival(self) -> None:
        """Note a request's arrival for the peak-rate and concurrency figures."""
        self._meter.note(self._clock())
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def record_departure(self) -> None:
        """Note that a request's handling ended (answered, refused or reset)."""
        self.in_flight -= 1

    def record_answer(self, export: SimExport) -> None:
        """Count a status answer delivered for ``export``."""
        export.polls += 1
        if export.first_answered_at is None:
            export.first_answered_at = self._clock()

    def record_evaluation_answer(self, evaluation: SimEvaluation) -> None:
        """Count a status answer delivered for ``evaluation``."""
        evaluation.polls += 1

    def record_call(self, call: str) -> None:
        """Count a request that reached ``call`` (``"v2.create_export"``...)."""
        self.requests_by_call[call] += 1

    def record(self, outcome: str) -> None:
        """Count one request's outcome."""
        self.requests_by_outcome[outcome] += 1
        if self.request_log is not None:
            self.request_log.append((self._clock(), outcome))

    def record_file(self, outcome: str, export_id: int | None) -> None:
        """Count one file request's outcome, for ``export_id`` when it named one."""
        self.file_requests_by_outcome[outcome] += 1
        if export_id is not None:
            self.file_requests_by_export[export_id] += 1

    def file_started(self) -> None:
        """A file body starts streaming (for the peak of concurrent file responses)."""
        self.files_in_flight += 1
        self.peak_files_in_flight = max(self.peak_files_in_flight, self.files_in_flight)

    def file_ended(self, bytes_sent: int) -> None:
        """A file body stopped streaming after ``bytes_sent`` bytes."""
        self.files_in_flight -= 1
        self.file_bytes_sent += bytes_sent

    @property
    def total_file_requests(self) -> int:
        """Requests for files (local links and BOS) so far."""
        return sum(self.file_requests_by_outcome.values())

    @property
    def creates_by_evaluation(self) -> dict[int, int]:
        """Exports made by create calls per evaluation id, for evaluations that had one."""
        return {
            evaluation.evaluation_id: len(evaluation.export_ids)
            for evaluation in self._evaluations
            if evaluation.export_ids
        }

    @property
    def polls_by_evaluation(self) -> dict[int, int]:
        """Status answers delivered per evaluation id, for evaluations polled at least once."""
        return {e.evaluation_id: e.polls for e in self._evaluations if e.polls}

    @property
    def total_requests(self) -> int:
        """Requests to the console calls (both generations) so far."""
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
    def first_answered_at_by_export(self) -> dict[int, float]:
        """When each export was first answered since the counters were last reset."""
        return {
            export.export_id: export.first_answered_at
            for export in self._table
            if export.first_answered_at is not None
        }

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
        """A JSON-able summary; per-export and per-evaluation records only with
        ``include_exports``, the
        request log (``[[time, outcome], ...]``, empty unless kept) with
        ``include_requests``."""
        now = self._clock()
        polls = [export.polls for export in self._table]
        summary: dict[str, Any] = {
            "total_requests": self.total_requests,
            "requests_by_outcome": dict(self.requests_by_outcome),
            "peak_requests_per_second": self.peak_requests_per_second,
            "peak_in_flight": self.peak_in_flight,
            "monotonic_now": now,
            "exports": {
                "total": len(polls),
                "by_state": self._table.count_by_state(now),
                "polled": sum(1 for count in polls if count),
                "total_polls": sum(polls),
                "max_polls": max(polls, default=0),
            },
        }
        summary["requests_by_call"] = dict(self.requests_by_call)
        creates = self.creates_by_evaluation
        summary["evaluations"] = {
            "total": len(self._evaluations),
            "by_state": self._evaluations.count_by_state(now),
            "polled": len(self.polls_by_evaluation),
            "total_polls": sum(e.polls for e in self._evaluations),
            "exports_created": sum(creates.values()),
            "with_exports": len(creates),
            "with_more_than_one_export": sum(1 for count in creates.values() if count > 1),
        }
        summary["files"] = {
            "total_requests": self.total_file_requests,
            "requests_by_outcome": dict(self.file_requests_by_outcome),
            "bytes_sent": self.file_bytes_sent,
            "peak_in_flight": self.peak_files_in_flight,
            "resumed_with_if_match": self.resumed_with_if_match,
        }
        if include_exports:
            summary["export_records"] = [export.summary_at(now) for export in self._table]
            summary["evaluation_records"] = [e.summary_at(now) for e in self._evaluations]
        if include_requests:
            summary["request_log"] = [list(entry) for entry in self.request_log or ()]
        return summary
