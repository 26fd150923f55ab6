"""Simulated model evaluations and their table. Pure: like exports, an evaluation's state at
a moment is computed from its schedule when asked.

One evaluation is visible through both generations of the API: V1 names it by its int
``id`` and spells its states ``Pending``, ``Doing``..., V2 by its ``ame-`` string id and
spells them ``Queued``, ``Running``... Inside, an evaluation walks through *phases*, and
each generation has a table from phase to its own state name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

from .exports import export_id_from_str, export_id_str_for

__all__ = [
    "EVALUATION_OUTCOMES",
    "FIRST_EVALUATION_ID",
    "V1_EVALUATION_STATES",
    "V2_EVALUATION_STATES",
    "EvaluationOutcome",
    "EvaluationTable",
    "SimEvaluation",
    "evaluation_id_from_str",
    "evaluation_id_str_for",
]

EvaluationOutcome = Literal["done", "partly_done", "failed", "stopped"]
EVALUATION_OUTCOMES: tuple[EvaluationOutcome, ...] = ("done", "partly_done", "failed", "stopped")
"""How an evaluation can end; ``done`` and ``partly_done`` can be exported."""

EXPORTABLE_OUTCOMES = frozenset({"done", "partly_done"})

V1_EVALUATION_STATES: dict[str, str] = {
    "pending": "Pending",
    "manual": "DoingWithManualBegin",
    "running": "Doing",
    "metrics": "Doing",
    "stopping": "Stopping",
    "done": "Done",
    "partly_done": "PartlyDone",
    "failed": "Failed",
    "stopped": "Stopped",
}
"""Phase -> the V1 ``eval/detail`` state (V1 has no state of its own for the metrics phase)."""

V2_EVALUATION_STATES: dict[str, str] = {
    "pending": "Queued",
    "manual": "RunningWithManualBegin",
    "running": "Running",
    "metrics": "RunningWithMetricsCalculating",
    "stopping": "Stopping",
    "done": "Successed",
    "partly_done": "Successed",
    "failed": "Failed",
    "stopped": "Stopped",
}
"""Phase -> the V2 ``DescribeEvalTask`` state (``Successed`` spelled as Baidu does; V2 has no
state for a partly done evaluation, so it is ``Successed`` there)."""

FIRST_EVALUATION_ID = 1_000_001
"""Evaluation ids count up from here, far from export ids, so a client that sends one kind
of id where the other belongs meets an unknown id instead of a lucky match."""

_MAX_EVALUATION_ID = 2**63 - 1
_STR_PREFIX = "ame-"
# The phases' share of an evaluation's run: queued for the first fifth, then (if it waits
# for a manual start) a fifth of that, and the last fifth calculating metrics (or stopping).
_QUEUED_SHARE = 0.2
_MANUAL_SHARE = 0.2
_LAST_SHARE = 0.2
_HELD_START_SECONDS = 1.0


def evaluation_id_str_for(evaluation_id: int) -> str:
    """The ``ame-`` + 12 lowercase letters/digits string id of an int evaluation id."""
    return _STR_PREFIX + export_id_str_for(evaluation_id)[len("amemt-") :]


def evaluation_id_from_str(text: str) -> int | None:
    """The int id whose string id is ``text``, or ``None`` if it is not an ``ame-`` id."""
    if not text.startswith(_STR_PREFIX):
        return None
    return export_id_from_str("amemt-" + text[len(_STR_PREFIX) :])


class SimEvaluation:
    """One simulated evaluation: queued, maybe waiting for a manual start, running, then
    calculating metrics (or stopping), then its ``outcome`` for good at ``finish_at``.
    Times are monotonic; a held evaluation has ``finish_at = inf``."""

    __slots__ = (
        "_clock",
        "created_at",
        "evaluation_id",
        "export_ids",
        "finish_at",
        "last_phase_at",
        "manual_until",
        "outcome",
        "polls",
        "running_at",
    )

    def __init__(
        self,
        evaluation_id: int,
        *,
        created_at: float,
        finish_after: float,
        outcome: EvaluationOutcome,
        manual: bool,
        clock: Callable[[], float],
    ) -> None:
        self.evaluation_id = evaluation_id
        self.created_at = created_at
        self.outcome: EvaluationOutcome = outcome
        self.polls = 0
        self.export_ids: list[int] = []
        """Every export created for this evaluation, in order (answered or not)."""
        self._clock = clock
        if math.isinf(finish_after):
            self.running_at = created_at + _HELD_START_SECONDS
            self.manual_until = self.running_at + (_HELD_START_SECONDS if manual else 0.0)
        else:
            self.running_at = created_at + finish_after * _QUEUED_SHARE
            self.manual_until = self.running_at + (finish_after * _MANUAL_SHARE if manual else 0.0)
        self.finish_at = created_at + finish_after
        self.last_phase_at = (
            math.inf if math.isinf(finish_after) else self.finish_at - finish_after * _LAST_SHARE
        )

    def __repr__(self) -> str:
        return (
            f"SimEvaluation(evaluation_id={self.evaluation_id}, "
            f"phase={self.phase_at(self._clock())!r}, outcome={self.outcome!r})"
        )

    @property
    def evaluation_id_str(self) -> str:
        """The V2 ``taskId`` / V1 ``idStr`` (``ame-...``)."""
        return evaluation_id_str_for(self.evaluation_id)

    @property
    def name(self) -> str:
        """The evaluation's display name."""
        return f"simulated-evaluation-{self.evaluation_id}"

    @property
    def held(self) -> bool:
        """Whether it waits for ``finish`` by hand instead of a schedule."""
        return math.isinf(self.finish_at)

    def phase_at(self, now: float) -> str:
        """The phase at monotonic time ``now`` (a key of ``V1_EVALUATION_STATES``)."""
        if now >= self.finish_at:
            return self.outcome
        if now < self.running_at:
            return "pending"
        if now < self.manual_until:
            return "manual"
        if now >= self.last_phase_at:
            return "stopping" if self.outcome == "stopped" else "metrics"
        return "running"

    def state_at(self, now: float, api: Literal["v1", "v2"] = "v1") -> str:
        """The state at ``now`` as generation ``api`` spells it."""
        table = V1_EVALUATION_STATES if api == "v1" else V2_EVALUATION_STATES
        return table[self.phase_at(now)]

    def exportable_at(self, now: float) -> bool:
        """Whether its results can be exported at ``now`` (finished Done or PartlyDone)."""
        return now >= self.finish_at and self.outcome in EXPORTABLE_OUTCOMES

    def v1_result_at(self, now: float) -> dict[str, Any]:
        """The ``result`` of a V1 ``eval/detail`` answer at ``now``."""
        return {
            "id": self.evaluation_id,
            "idStr": self.evaluation_id_str,
            "name": self.name,
            "state": self.state_at(now, "v1"),
        }

    def v2_result_at(self, now: float) -> dict[str, Any]:
        """The ``result`` of a V2 ``DescribeEvalTask`` answer at ``now``."""
        return {
            "taskId": self.evaluation_id_str,
            "taskName": self.name,
            "state": self.state_at(now, "v2"),
        }

    def summary_at(self, now: float) -> dict[str, Any]:
        """A compact JSON-able record for statistics."""
        return {
            "id": self.evaluation_id,
            "idStr": self.evaluation_id_str,
            "state": self.state_at(now, "v1"),
            "outcome": self.outcome,
            "finish_at": None if self.held else self.finish_at,
            "polls": self.polls,
            "exports_created": list(self.export_ids),
        }


class EvaluationTable:
    """All simulated evaluations by int id; finds one by either id form."""

    __slots__ = ("_by_id", "_clock", "_next_id")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._by_id: dict[int, SimEvaluation] = {}
        self._clock = clock
        self._next_id = FIRST_EVALUATION_ID

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[SimEvaluation]:
        return iter(self._by_id.values())

    @property
    def by_id(self) -> dict[int, SimEvaluation]:
        """The evaluations by int id (do not modify)."""
        return self._by_id

    def add(
        self,
        *,
        finish_after: float | None,
        outcome: EvaluationOutcome,
        manual: bool,
        evaluation_id: int | None,
        now: float,
    ) -> SimEvaluation:
        """Create an evaluation ending in ``outcome`` ``finish_after`` seconds after ``now``
        (``None``: held until ``finish``)."""
        if outcome not in EVALUATION_OUTCOMES:
            raise ValueError(f"outcome must be one of {EVALUATION_OUTCOMES}, got {outcome!r}")
        if evaluation_id is None:
            evaluation_id = self._next_id
        elif (
            isinstance(evaluation_id, bool)
            or not isinstance(evaluation_id, int)
            # The string form must invert, so ids stay within what the scramble covers.
            or not 1 <= evaluation_id < 36**12
        ):
            raise ValueError(
                f"evaluation_id must be an int from 1 to 36**12-1, got {evaluation_id!r}"
            )
        if evaluation_id in self._by_id:
            raise ValueError(f"evaluation {evaluation_id} already exists")
        delay = math.inf if finish_after is None else float(finish_after)
        if not delay >= 0:
            raise ValueError(f"finish_after must be >= 0 seconds or None, got {finish_after!r}")
        evaluation = SimEvaluation(
            evaluation_id,
            created_at=now,
            finish_after=delay,
            outcome=outcome,
            manual=manual,
            clock=self._clock,
        )
        self._by_id[evaluation_id] = evaluation
        self._next_id = max(self._next_id, min(evaluation_id + 1, _MAX_EVALUATION_ID))
        return evaluation

    def find(self, key: object) -> SimEvaluation | None:
        """The evaluation an int id or an ``ame-`` string names; other values name none."""
        if isinstance(key, bool):
            return None
        if isinstance(key, int):
            return self._by_id.get(key)
        if isinstance(key, str):
            decoded = evaluation_id_from_str(key)
            return None if decoded is None else self._by_id.get(decoded)
        return None

    def get(self, key: int | str) -> SimEvaluation:
        """Like ``find`` but raises ``KeyError`` for an unknown id."""
        evaluation = self.find(key)
        if evaluation is None:
            raise KeyError(f"no simulated evaluation {key!r}")
        return evaluation

    def finish(self, key: int | str, outcome: EvaluationOutcome, now: float) -> SimEvaluation:
        """End an evaluation in ``outcome`` at ``now`` (a no-op if it already ended so).

        Raises ``ValueError`` if it already ended otherwise: finished evaluations never change.
        """
        if outcome not in EVALUATION_OUTCOMES:
            raise ValueError(f"outcome must be one of {EVALUATION_OUTCOMES}, got {outcome!r}")
        evaluation = self.get(key)
        if now >= evaluation.finish_at:
            if evaluation.outcome != outcome:
                raise ValueError(
                    f"evaluation {evaluation.evaluation_id} already ended {evaluation.outcome}; "
                    "finished evaluations never change"
                )
            return evaluation
        evaluation.outcome = outcome
        evaluation.finish_at = now
        evaluation.last_phase_at = min(evaluation.last_phase_at, now)
        return evaluation

    def count_by_state(self, now: float) -> dict[str, int]:
        """How many evaluations are in each V1 state at ``now``."""
        counts: dict[str, int] = {}
        for evaluation in self._by_id.values():
            state = evaluation.state_at(now, "v1")
            counts[state] = counts.get(state, 0) + 1
        return counts
