"""The simulator's test controls: its exports and evaluations added, driven and read, and
its statistics. ``Simulator`` has them (``_Controls``); ``app.py`` serves them over HTTP."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .._checks import check_count, check_number
from .calls import (
    Generation,
)
from .config import FaultRates, SimulatorConfig
from .evaluations import EvaluationOutcome, EvaluationTable, SimEvaluation
from .exports import DONE, EXPORT_TYPES, FAIL, ExportTable, ExportType, SimExport
from .files import SimFile
from .limits import FaultPicker, QpsWindow
from .stats import SimulatorStats
from .storage import FileServer

__all__: list[str] = []


class _Controls:
    """``Simulator``'s methods that drive and read its tables (no HTTP)."""

    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    _faults: FaultPicker
    _create_faults: FaultPicker | None
    _limiter: QpsWindow | None
    _config: SimulatorConfig
    _table: ExportTable
    _evaluations: EvaluationTable
    _stats: SimulatorStats
    _storage: FileServer
    _schedule_rng: random.Random
    _evaluation_rng: random.Random

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> SimulatorConfig:
        """The current configuration (frozen; change it with ``configure``)."""
        return self._config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change knobs mid-run, e.g. ``configure(qps=5, faults=FaultRates(reset=0.1))``.

        ``faults`` (and ``create_faults``) may also be a number: a combined rate split
        evenly across the kinds.
        A new ``seed`` restarts the fault draws; a new ``qps`` or ``qps_window`` starts an
        empty window.
        """
        faults = changes.get("faults")
        if faults is not None and not isinstance(faults, FaultRates):
            changes["faults"] = FaultRates.even(faults)
        create_faults = changes.get("create_faults")
        if create_faults is not None and not isinstance(create_faults, FaultRates):
            changes["create_faults"] = FaultRates.even(create_faults)
        old, new = self._config, dataclasses.replace(self._config, **changes)
        self._config = new
        if new.seed != old.seed:
            self._faults = FaultPicker(new.faults, random.Random(f"{new.seed}:faults"))
        elif new.faults != old.faults:
            self._faults.set_rates(new.faults)
        if (new.seed, new.create_faults) != (old.seed, old.create_faults):
            self._create_faults = self._make_create_faults(new)
        if (new.qps, new.qps_window) != (old.qps, old.qps_window):
            self._limiter = self._make_limiter(new)
        self._storage.reconfigure(old, new)
        return new

    @staticmethod
    def _make_create_faults(config: SimulatorConfig) -> FaultPicker | None:
        if config.create_faults is None:
            return None
        return FaultPicker(config.create_faults, random.Random(f"{config.seed}:create-faults"))

    @staticmethod
    def _make_limiter(config: SimulatorConfig) -> QpsWindow | None:
        return None if config.qps is None else QpsWindow.for_rate(config.qps, config.qps_window)

    def wall_time(self) -> float:
        """The simulator's epoch time: the wall clock shifted by ``clock_skew``."""
        return self._wall_clock() + self._config.clock_skew

    # -- exports -------------------------------------------------------------------

    def add_export(
        self,
        finish_after: float | None = 3.0,
        fail: bool = False,
        export_type: ExportType = "local",
        uploading_after: float | None = None,
        export_id: int | None = None,
    ) -> SimExport:
        """Add an export that turns Uploading after ``uploading_after`` seconds (default a
        third of ``finish_after``) and Done (or Fail) after ``finish_after`` seconds;
        ``finish_after=None`` holds it until ``complete``/``fail``. Ids count up from 1."""
        return self._table.add(
            finish_after=finish_after,
            fail=fail,
            export_type=export_type,
            uploading_after=uploading_after,
            export_id=export_id,
            now=self._clock(),
        )

    def add_exports(
        self, n: int, max_seconds: float = 8.0, fail_ratio: float = 0.1
    ) -> list[SimExport]:
        """Add ``n`` exports with seeded finish times spread uniformly over
        [0, ``max_seconds``] from now; ``round(n * fail_ratio)`` of them, chosen by the
        seed, end in Fail. Export types alternate at random between local and storage."""
        check_count("n", n, minimum=0)
        check_number("max_seconds", max_seconds, inclusive=True)
        check_number("fail_ratio", fail_ratio, unit="fraction", inclusive=True, maximum=1.0)
        rng = self._schedule_rng
        failing = set(rng.sample(range(n), round(n * fail_ratio)))
        now = self._clock()
        added = []
        for index in range(n):
            finish_after = rng.uniform(0.0, max_seconds)
            added.append(
                self._table.add(
                    finish_after=finish_after,
                    fail=index in failing,
                    export_type=EXPORT_TYPES[rng.random() < 0.5],
                    uploading_after=finish_after * rng.uniform(0.1, 0.6),
                    export_id=None,
                    now=now,
                )
            )
        return added

    def complete(self, export_id: int | str) -> SimExport:
        """Make an export Done now (no-op if it already is; ``ValueError`` if it failed)."""
        return self._table.settle(export_id, DONE, self._clock())

    def fail(self, export_id: int | str) -> SimExport:
        """Make an export Fail now (no-op if it already has; ``ValueError`` if it is Done)."""
        return self._table.settle(export_id, FAIL, self._clock())

    def hold(self, export_id: int | str) -> SimExport:
        """Keep a not yet terminal export from finishing until ``complete``/``fail``."""
        return self._table.hold(export_id, self._clock())

    def export(self, export_id: int | str) -> SimExport:
        """The export with either id form; ``KeyError`` if there is none."""
        return self._table.get(export_id)

    def state_of(self, export_id: int | str) -> str:
        """The export's state now, as the API would spell it."""
        return self._table.get(export_id).state_at(self._clock())

    def file_of(self, export_id: int | str) -> SimFile:
        """The file a Done export serves: its name, size, bytes and ``digest()``."""
        return self._storage.file_of(self._table.get(export_id))

    @property
    def exports(self) -> Mapping[int, SimExport]:
        """All exports by int id (read-only view)."""
        return MappingProxyType(self._table.by_id)

    # -- evaluations ---------------------------------------------------------------

    def add_evaluation(
        self,
        finish_after: float | None = 3.0,
        outcome: EvaluationOutcome = "done",
        manual: bool = False,
        evaluation_id: int | None = None,
    ) -> SimEvaluation:
        """Add an evaluation that ends in ``outcome`` (``done``, ``partly_done``, ``failed``,
        ``stopped``) after ``finish_after`` seconds (``None``: held until ``finish_evaluation``);
        ``manual`` makes it wait for a manual start first. Ids count up from 1000001."""
        return self._evaluations.add(
            finish_after=finish_after,
            outcome=outcome,
            manual=manual,
            evaluation_id=evaluation_id,
            now=self._clock(),
        )

    def add_evaluations(
        self,
        n: int,
        max_seconds: float = 8.0,
        fail_ratio: float = 0.1,
        *,
        partly_done_ratio: float = 0.0,
        stopped_ratio: float = 0.0,
        manual_ratio: float = 0.0,
    ) -> list[SimEvaluation]:
        """Add ``n`` evaluations finishing at seeded times spread uniformly over
        [0, ``max_seconds``] from now: ``round(n * fail_ratio)`` of them, chosen by the
        seed, end Failed, ``round(n * partly_done_ratio)`` PartlyDone,
        ``round(n * stopped_ratio)`` Stopped, the rest Done; a seeded ``manual_ratio``
        share waits for a manual start first."""
        check_count("n", n, minimum=0)
        check_number("max_seconds", max_seconds, inclusive=True)
        ratios = {"fail_ratio": fail_ratio, "partly_done_ratio": partly_done_ratio}
        ratios |= {"stopped_ratio": stopped_ratio, "manual_ratio": manual_ratio}
        for name, ratio in ratios.items():
            check_number(name, ratio, unit="fraction", inclusive=True, maximum=1.0)
        counts = [round(n * ratio) for ratio in (fail_ratio, partly_done_ratio, stopped_ratio)]
        if sum(counts) > n:
            raise ValueError(
                f"fail_ratio + partly_done_ratio + stopped_ratio must be at most 1, got "
                f"{fail_ratio:g} + {partly_done_ratio:g} + {stopped_ratio:g}"
            )
        rng = self._evaluation_rng
        chosen = rng.sample(range(n), sum(counts))
        outcomes: dict[int, EvaluationOutcome] = {}
        start = 0
        ending: tuple[EvaluationOutcome, ...] = ("failed", "partly_done", "stopped")
        for count, outcome in zip(counts, ending, strict=True):
            outcomes.update(dict.fromkeys(chosen[start : start + count], outcome))
            start += count
        now = self._clock()
        return [
            self._evaluations.add(
                finish_after=rng.uniform(0.0, max_seconds),
                outcome=outcomes.get(index, "done"),
                manual=rng.random() < manual_ratio,
                evaluation_id=None,
                now=now,
            )
            for index in range(n)
        ]

    def finish_evaluation(
        self, evaluation_id: int | str, outcome: EvaluationOutcome = "done"
    ) -> SimEvaluation:
        """End an evaluation in ``outcome`` now (no-op if it already has; ``ValueError`` if
        it ended otherwise)."""
        return self._evaluations.finish(evaluation_id, outcome, self._clock())

    def evaluation(self, evaluation_id: int | str) -> SimEvaluation:
        """The evaluation with either id form; ``KeyError`` if there is none."""
        return self._evaluations.get(evaluation_id)

    def evaluation_state_of(self, evaluation_id: int | str, api: Generation = "v1") -> str:
        """The evaluation's state now, as generation ``api`` spells it."""
        return self._evaluations.get(evaluation_id).state_at(self._clock(), api)

    @property
    def evaluations(self) -> Mapping[int, SimEvaluation]:
        """All evaluations by int id (read-only view)."""
        return MappingProxyType(self._evaluations.by_id)

    def creates_by_evaluation(self) -> dict[int, int]:
        """How many exports create calls made per evaluation id, for every evaluation that
        had one, whether or not the answer reached its caller (never reset)."""
        return self._stats.creates_by_evaluation

    # -- observability -------------------------------------------------------------

    @property
    def stats(self) -> SimulatorStats:
        """Live request and export counters."""
        return self._stats

    def reset_stats(self) -> None:
        """Start counting afresh (e.g. between the phases of a benchmark)."""
        self._stats.reset()

    def stats_dict(
        self, *, include_exports: bool = False, include_requests: bool = False
    ) -> dict[str, Any]:
        """The statistics as JSON-able data, as served at ``GET /_sim/stats``
        (``?exports=1``, ``?requests=1`` for the optional parts)."""
        return self._stats.as_dict(
            include_exports=include_exports, include_requests=include_requests
        )
