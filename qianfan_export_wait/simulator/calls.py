"""The simulator's six calls: their paths and actions, and how a request body is read.

Pure: a reader takes the parsed JSON body and returns what was asked for, or raises
``BadRequest`` saying what is wrong; the application turns that into the error answer of
the request's generation (V1: ``error_code`` 500001 in an HTTP 200 body; V2: HTTP 400, or
404 for an id that names nothing, with ``{"requestId", "code", "message"}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .exports import EXPORT_TYPES, VOLUME_ID, ExportType

__all__ = [
    "V1_CREATE_EXPORT_PATH",
    "V1_EVALUATION_PATH",
    "V1_EXPORT_CONTENT",
    "V2_ACTIONS",
    "V2_EVAL_PATH",
    "V2_EXPORT_CONTENT",
    "BadRequest",
    "CreateRequest",
    "Generation",
    "Operation",
    "read_id",
    "read_v1_create",
    "read_v2_create",
    "shown",
]

Generation = Literal["v1", "v2"]
Operation = Literal["export_status", "evaluation_status", "create_export"]

V1_EVALUATION_PATH = "/wenxinworkshop/modelrepo/eval/detail"
V1_CREATE_EXPORT_PATH = "/wenxinworkshop/modelrepo/eval/result/export"
V2_EVAL_PATH = "/v2/eval"
V2_ACTIONS: dict[str, Operation] = {
    "DescribeEvalTask": "evaluation_status",
    "CreateEvalResultExportTask": "create_export",
    "DescribeEvalResultExportTask": "export_status",
}
"""The ``Action`` query values of ``/v2/eval`` the simulator answers, and what each does."""

V1_EXPORT_CONTENT = frozenset({"prompt", "prediction", "completion", "metrics"})
V2_EXPORT_CONTENT = V1_EXPORT_CONTENT | {"system"}
_V1_EXPORT_OPTS = ("total", "part")
_V2_STORAGE_TYPES: dict[str, ExportType] = {"sysStorage": "local", "BOS": "storage"}
_MAX_RESULT_IDS = 100


_SHOWN_CHARS = 80


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length, for quoting a client's value back to it."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


class BadRequest(Exception):
    """A request the platform refuses; ``not_found`` when it names an id that does not exist."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """What a create call asks for, in either generation's terms."""

    evaluation_key: int | str
    export_type: ExportType
    export_content: tuple[str, ...]


def _content(value: object, allowed: frozenset[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest(
            f"exportContent must be a non-empty list of {sorted(allowed)}, got {shown(value)}"
        )
    for item in value:
        if not isinstance(item, str) or item not in allowed:
            raise BadRequest(f"exportContent item {shown(item)} is not one of {sorted(allowed)}")
    return tuple(dict.fromkeys(value))


def _bucket(name: str, value: object) -> None:
    if value != VOLUME_ID:
        raise BadRequest(
            f"{name} {shown(value)} is not a bucket of this account "
            f"(the simulator has {VOLUME_ID!r})"
        )


def read_v1_create(body: dict[str, object]) -> CreateRequest:
    """Read a V1 ``eval/result/export`` body: ``id``, ``exportType``, ``exportOpt``,
    ``exportContent``, ``volumeId`` (for ``storage``), ``resultIds`` (for ``part``)."""
    evaluation_id = body.get("id")
    if isinstance(evaluation_id, bool) or not isinstance(evaluation_id, int):
        raise BadRequest(f"id must be the evaluation's int id, got {shown(evaluation_id)}")
    export_type = body.get("exportType")
    if export_type not in EXPORT_TYPES:
        raise BadRequest(f"exportType must be 'local' or 'storage', got {shown(export_type)}")
    export_opt = body.get("exportOpt", "total")
    if export_opt not in _V1_EXPORT_OPTS:
        raise BadRequest(f"exportOpt must be 'total' or 'part', got {shown(export_opt)}")
    content = _content(body.get("exportContent"), V1_EXPORT_CONTENT)
    if export_type == "storage":
        _bucket("volumeId", body.get("volumeId"))
    if export_opt == "part":
        result_ids = body.get("resultIds")
        if (
            not isinstance(result_ids, list)
            or not 1 <= len(result_ids) <= _MAX_RESULT_IDS
            or not all(isinstance(item, str) and item for item in result_ids)
        ):
            raise BadRequest(
                f"resultIds must list 1 to {_MAX_RESULT_IDS} result id strings for "
                f"exportOpt 'part', got {shown(result_ids)}"
            )
    return CreateRequest(evaluation_id, "storage" if export_type == "storage" else "local", content)


def read_v2_create(body: dict[str, object]) -> CreateRequest:
    """Read a V2 ``CreateEvalResultExportTask`` body: ``evalId``, ``storageType`` (default
    ``sysStorage``), ``bucket`` (for ``BOS``), ``exportContent``."""
    evaluation_id = body.get("evalId")
    if not isinstance(evaluation_id, str) or not evaluation_id:
        raise BadRequest(f"evalId must be the evaluation's 'ame-' id, got {shown(evaluation_id)}")
    storage_type = body.get("storageType", "sysStorage")
    if not isinstance(storage_type, str) or storage_type not in _V2_STORAGE_TYPES:
        raise BadRequest(f"storageType must be 'BOS' or 'sysStorage', got {shown(storage_type)}")
    content = _content(body.get("exportContent"), V2_EXPORT_CONTENT)
    if storage_type == "BOS":
        _bucket("bucket", body.get("bucket"))
    return CreateRequest(evaluation_id, _V2_STORAGE_TYPES[storage_type], content)


def read_id(body: dict[str, object], field: str, generation: Generation, operation: str) -> object:
    """The id field of a status body, checked for the generation's type: V1 export ids are
    an int or a string, V1 evaluation ids an int, V2 ids a string."""
    if field not in body:
        raise BadRequest(f"{field} is missing")
    value = body[field]
    if generation == "v2" and not isinstance(value, str):
        raise BadRequest(f"{field} must be a string id, got {shown(value)}")
    if (
        operation == "evaluation_status"
        and generation == "v1"
        and (isinstance(value, bool) or not isinstance(value, int))
    ):
        raise BadRequest(f"{field} must be the evaluation's int id, got {shown(value)}")
    return value
