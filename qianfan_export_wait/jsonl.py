"""The JSON Lines record of each export (the object ``wait`` prints and the durable queue
keeps), and the one way it becomes a line of text.

Every line is strict JSON (RFC 8259) whatever the server sent: a non-finite number
(``NaN``, ``1e400``) becomes ``null``, and every non-ASCII character, a lone surrogate
included, is written as a ``\\u`` escape, so the line is plain ASCII and survives any
encoding of stdout. Pure code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import ApiError, QianfanError
from .models import ExportId, ExportStatus
from .waiting.outcomes import ExportOutcome

__all__ = ["RECORD_KEYS", "json_line", "outcome_record", "record_for"]

RECORD_KEYS = ("export_id", "outcome", "state", "result", "error", "polls", "elapsed_s")
"""The keys every record has, in order (``--download`` adds ``file`` or ``download_error``)."""

_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def outcome_record(
    export_id: ExportId,
    outcome: str,
    status: ExportStatus | None,
    error: QianfanError | None,
    polls: int,
    elapsed: float,
) -> dict[str, Any]:
    """The JSON object printed for one export."""
    if isinstance(error, ApiError):
        error_object: dict[str, Any] | None = error.to_dict()
    elif error is not None:
        error_object = {"code": None, "message": str(error), "log_id": None}
    else:
        error_object = None
    return {
        "export_id": export_id,
        "outcome": outcome,
        "state": None if status is None else status.state_name,
        "result": None if status is None else _as_dict(status.raw),
        "error": error_object,
        "polls": polls,
        "elapsed_s": round(elapsed, 3),
    }


def _as_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else dict(raw)


def record_for(outcome: ExportOutcome) -> dict[str, Any]:
    """The JSON object for a waiter outcome."""
    return outcome_record(
        outcome.export_id,
        outcome.kind.value,
        outcome.status,
        outcome.error,
        outcome.polls,
        outcome.elapsed,
    )


def json_line(record: Mapping[str, Any]) -> str:
    """``record`` as one line of strict, ASCII-only JSON (no newline).

    Non-finite numbers become ``null``. A ``result`` nested too deeply to encode becomes
    ``null`` too, rather than the line being lost.
    """
    try:
        return _ENCODER.encode(record)
    except ValueError:  # NaN or an infinity somewhere: JSON has no such numbers
        return json_line(_finite(record))
    except RecursionError:
        if record.get("result") is None:
            raise
        return json_line({**record, "result": None})


def _finite(value: Any) -> Any:
    """A copy of ``value`` with every non-finite float replaced by ``None`` (iterative, so
    any depth the JSON decoder accepted is fine)."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, Mapping):
            copy: dict[Any, Any] = dict(item)
            pending.append(copy)
            return copy
        if isinstance(item, (list, tuple)):
            listed = list(item)
            pending.append(listed)
            return listed
        return item

    pending: list[dict[Any, Any] | list[Any]] = []
    top = clean(value)
    while pending:
        container = pending.pop()
        if isinstance(container, dict):
            for key, item in container.items():
                container[key] = clean(item)
        else:
            for index, item in enumerate(container):
                container[index] = clean(item)
    return top
