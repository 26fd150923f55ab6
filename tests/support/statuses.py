"""The one status builder of the tests: an ``ExportStatus`` of any state, id, url and extra
fields, and the wire bodies it is read from (V1 and V2), as objects or as answer bytes.

A record is made the way the library makes one, by reading a body: ``make_status(...)`` is
``parse_export_status(v1_body(...))``. ``documented=True`` fills every field API.md
documents (``RESULT_FIELDS``) and the ``log_id`` as in its example; otherwise a result
carries only what the record needs. A test that builds a hostile or odd body on purpose
writes it out by hand instead.
"""

from __future__ import annotations

import json
from typing import Any

from qianfan_export_wait.models import ExportId, ExportStatus, parse_export_status
from qianfan_export_wait.simulator.exports import V2_STORAGE_PATH_FIELD

__all__ = [
    "DOCUMENTED_LOG_ID",
    "LOG_ID",
    "REQUEST_ID",
    "RESULT_FIELDS",
    "STR_ID_NUMBER",
    "answer_bytes",
    "make_status",
    "v1_answer",
    "v1_body",
    "v1_result",
    "v2_answer",
    "v2_error",
    "v2_result",
]

LOG_ID = "1"
"""The ``log_id`` of a V1 body unless told otherwise."""
DOCUMENTED_LOG_ID = "2340692759"
"""The ``log_id`` of API.md's example: that of a ``documented`` body and of ``v1_answer``."""
REQUEST_ID = "req-1"
"""The ``requestId`` of a V2 success body unless told otherwise."""
STR_ID_NUMBER = 305
"""The ``exportID`` of an export known by its string id (API.md's example)."""


class Default:
    """The type of ``DEFAULT``: an argument left to its default."""


DEFAULT = Default()

RESULT_FIELDS = (
    "id",
    "idStr",
    "exportID",
    "exportIDStr",
    "state",
    "exportType",
    "volumeId",
    "exportPath",
    "downloadUrl",
)
"""The fields of a V1 status ``result``, as API.md documents them."""


def v1_result(
    export_id: ExportId = 96,
    state: str = "Done",
    *,
    url: str | None = None,
    documented: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A V1 status ``result`` for ``export_id`` (either id form) in ``state``, with
    ``downloadUrl`` ``url`` and ``fields`` added last (they win)."""
    numeric = export_id if isinstance(export_id, int) else STR_ID_NUMBER
    result: dict[str, Any]
    if documented:
        result = {
            "id": 305,
            "exportID": numeric,
            "exportIDStr": export_id if isinstance(export_id, str) else f"amemt-{numeric:012d}",
            "state": state,
            "exportType": "storage",
            "volumeId": "modelrepo-test",
            "exportPath": "a/b.csv",
            "downloadUrl": "",
        }
    else:
        result = {"exportID": numeric, "state": state, "exportType": "local"}
        if isinstance(export_id, str):
            result["exportIDStr"] = export_id
    if url is not None:
        result["downloadUrl"] = url
    result.update(fields)
    return result


def v1_body(
    export_id: ExportId = 96,
    state: str = "Done",
    *,
    log_id: str | Default | None = DEFAULT,
    url: str | None = None,
    documented: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A decoded V1 success body ``{"log_id", "result"}`` (no ``log_id`` when ``None``;
    ``LOG_ID``, or ``DOCUMENTED_LOG_ID`` when ``documented``, unless given) around
    ``v1_result(...)``."""
    if isinstance(log_id, Default):
        log_id = DOCUMENTED_LOG_ID if documented else LOG_ID
    result = v1_result(export_id, state, url=url, documented=documented, **fields)
    return {"result": result} if log_id is None else {"log_id": log_id, "result": result}


def make_status(
    export_id: ExportId = 96,
    state: str = "Done",
    *,
    log_id: str | Default | None = DEFAULT,
    url: str | None = None,
    documented: bool = False,
    **fields: Any,
) -> ExportStatus:
    """A fresh ``ExportStatus``, read from ``v1_body(...)`` as the client reads an answer
    (a new object each call: its identity tells which answer an outcome carries)."""
    return parse_export_status(
        v1_body(export_id, state, log_id=log_id, url=url, documented=documented, **fields)
    )


def v2_result(
    task_id: str = "amemt-gmq1",
    state: str = "Succeeded",
    *,
    url: str | None = "https://bj.bcebos.com/qianfan/x.zip?authorization=abc",
    storage_path: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A V2 ``DescribeEvalResultExportTask`` ``result`` for ``task_id`` in ``state`` (a
    sysStorage export with ``downloadUrl`` ``url``), ``fields`` added last."""
    result: dict[str, Any] = {
        "taskId": task_id,
        "evalId": "ame-eval1",
        "exportContent": ["prompt", "prediction"],
        "state": state,
        "storageType": "sysStorage",
    }
    if storage_path is not None:
        result[V2_STORAGE_PATH_FIELD] = storage_path
    if url is not None:
        result["downloadUrl"] = url
    result.update(fields)
    return result


def answer_bytes(payload: Any) -> bytes:
    """``payload`` as the JSON bytes of an answer."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def v1_answer(result: Any, log_id: str = DOCUMENTED_LOG_ID) -> bytes:
    """The bytes of a V1 success answer around ``result``."""
    return answer_bytes({"log_id": log_id, "result": result})


def v2_answer(result: Any, request_id: str = REQUEST_ID) -> bytes:
    """The bytes of a V2 success answer around ``result``."""
    return answer_bytes({"requestId": request_id, "result": result})


def v2_error(code: str, message: str = "something", request_id: str = "req-err") -> bytes:
    """The bytes of a V2 error answer."""
    return answer_bytes({"requestId": request_id, "code": code, "message": message})
