"""V2 export status: ``POST /v2/eval?Action=DescribeEvalResultExportTask``
``{"taskId": "amemt-..."}``, answered ``{"requestId", "result": {"taskId", "evalId",
"exportContent", "state", "storageType", <storage path>, "downloadUrl"}}``.

States (both vocabularies, any case): ``Queued``/``Pending`` and ``Running``/``Uploading``
running, ``Succeeded``/``Done`` done, ``Failed``/``Fail`` failed; anything else is kept as
the server's string, reads as running and is flagged unknown. Errors are
``{"requestId", "code", "message"}`` with HTTP >= 400.

The record is an ``ExportStatus`` (``api="v2"``) so outcomes and downloads work unchanged:
``export_id_str`` is ``taskId`` (``export_id`` is 0: V2 has no numeric id), ``id_str`` is
``evalId``, ``storageType`` ``BOS``/``sysStorage`` becomes ``export_type``
``storage``/``local``, and the BOS path is split into ``volume_id`` (the bucket) and
``export_path`` (the key). The path's field name is not in Baidu's published excerpts:
``storagePath`` (the name V2's sibling ``DescribeExportTask`` of datasets uses) is read
first, then ``exportPath``; a ``bucket`` field, when present, names the bucket. The state
is normalized onto ``ExportState``; ``server_state`` and ``raw`` keep what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ResponseFormatError, UnexpectedAnswerError
from ..models import ExportState, ExportStatus, describe_value
from ._common import (
    V2_EVAL_PATH,
    Now,
    Request,
    answer_result,
    json_body,
    optional_str,
    required_str,
    string_id_argument,
)

__all__ = ["ACTION", "STATES", "STORAGE_TYPES", "V2ExportStatus", "split_storage_path"]

ACTION = "DescribeEvalResultExportTask"
STATES: Mapping[str, ExportState] = {
    "queued": ExportState.PENDING,
    "pending": ExportState.PENDING,
    "running": ExportState.UPLOADING,
    "uploading": ExportState.UPLOADING,
    "succeeded": ExportState.DONE,
    "done": ExportState.DONE,
    "failed": ExportState.FAIL,
    "fail": ExportState.FAIL,
}
"""Casefolded V2 and V1 export state names, and the ``ExportState`` each means."""
_QUERY = (("Action", ACTION),)
STORAGE_TYPES: Mapping[str, str] = {"bos": "storage", "sysstorage": "local"}
"""Casefolded V2 ``storageType`` and the V1 ``exportType`` it amounts to."""


def split_storage_path(path: str | None, bucket: str | None) -> tuple[str | None, str | None]:
    """``(bucket, key)`` of a V2 full storage path (``bos:/bucket/key``, ``bos://bucket/key``,
    ``/bucket/key`` or ``bucket/key``); ``bucket``, when known, is trusted over the path.
    ``(bucket, None)`` when no key can be told apart."""
    if not path:
        return bucket, None
    rest = path.strip()
    if rest[:4].lower() == "bos:":
        rest = rest[4:]
    rest = rest.lstrip("/")
    if bucket:
        prefix = bucket + "/"
        key = rest[len(prefix) :] if rest.startswith(prefix) else rest
        return bucket, key or None
    head, _, key = rest.partition("/")
    if not head or not key:
        return None, None
    return head, key


@dataclass(frozen=True, slots=True)
class V2ExportStatus:
    """The V2 export-status call (an ``Operation[str, ExportStatus]``)."""

    name: str = "export_status"
    api: str = "v2"

    def build(self, args: str) -> Request:
        """The request for export task ``args`` (the string ``taskId``, ``amemt-...``)."""
        task_id = string_id_argument(args, "export task id", "amemt-...")
        if task_id.isascii() and '"' not in task_id and "\\" not in task_id:
            body = b'{"taskId":"%s"}' % task_id.encode("ascii")  # what json_body makes
        else:
            body = json_body({"taskId": task_id})
        return Request("v2.export_status", "POST", V2_EVAL_PATH, _QUERY, body)

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: str | None = None,
    ) -> ExportStatus:
        """The ``ExportStatus`` in an answer, or the classified error."""
        result, request_id = answer_result(self.api, status, headers, body, now)
        record = _record(status, result, request_id)
        if args is not None and record.export_id_str != args:
            raise UnexpectedAnswerError(
                f"answer is for export task {describe_value(record.export_id_str)}, "
                f"not {describe_value(args)}",
                asked=args,
                answered=record.export_id_str,
                log_id=request_id,
                http_status=status,
            )
        return record


def _record(status: int, result: Any, request_id: str | None) -> ExportStatus:
    if not isinstance(result, Mapping):
        raise ResponseFormatError(
            f"response 'result' is a JSON {type(result).__name__}, expected an object",
            log_id=request_id,
            http_status=status,
        )
    task_id = required_str(result, status, request_id, "taskId")
    state_name = required_str(result, status, request_id)
    storage_type = optional_str(result, "storageType")
    export_type = (
        None if storage_type is None else STORAGE_TYPES.get(storage_type.casefold(), storage_type)
    )
    bucket, key = split_storage_path(
        optional_str(result, "storagePath", "exportPath"), optional_str(result, "bucket")
    )
    return ExportStatus(
        export_id=0,
        export_id_str=task_id,
        id=None,
        id_str=optional_str(result, "evalId"),
        state=STATES.get(state_name.casefold(), state_name),
        export_type=export_type,
        volume_id=bucket,
        export_path=key,
        download_url=optional_str(result, "downloadUrl"),
        log_id=request_id,
        raw=result,
        api="v2",
        server_state=state_name,
    )
