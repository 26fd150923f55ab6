"""Reading an evaluation's ``result``, shared by both generations' status calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ResponseFormatError
from ..models import ExportId, describe_value
from ._common import eval_phase, required_str
from .records import EvalStatus

_ID_KEYS = ("taskId", "evalId", "evaluationId", "id", "idStr", "evalIdStr")


def _ids(result: Mapping[str, Any]) -> list[ExportId]:
    found: list[ExportId] = []
    for key in _ID_KEYS:
        value = result.get(key)
        if (isinstance(value, str) and value) or type(value) is int:
            found.append(value)
    return found


def eval_record(
    status: int,
    result: Any,
    log_id: str | None,
    *,
    api: str,
    expected: ExportId | None,
    partly_done_is_done: bool,
) -> EvalStatus:
    """The ``EvalStatus`` in ``result``, checked against ``expected`` when given."""
    if not isinstance(result, Mapping):
        raise ResponseFormatError(
            f"response 'result' is a JSON {type(result).__name__}, expected an object",
            log_id=log_id,
            http_status=status,
        )
    state = required_str(result, status, log_id)
    ids = _ids(result)
    if expected is not None and ids and str(expected) not in {str(value) for value in ids}:
        raise ResponseFormatError(
            f"answer is for evaluation {describe_value(ids[0])}, not {describe_value(expected)}",
            log_id=log_id,
            http_status=status,
        )
    eval_id = expected if expected is not None else (ids[0] if ids else None)
    if eval_id is None:
        raise ResponseFormatError(
            "the answer names no evaluation id (taskId, evalId, evaluationId or id)",
            log_id=log_id,
            http_status=status,
        )
    phase, known = eval_phase(state, partly_done_is_done=partly_done_is_done)
    return EvalStatus(
        eval_id=eval_id,
        state=state,
        phase=phase,
        state_is_known=known,
        api=api,
        log_id=log_id,
        raw=result,
    )
