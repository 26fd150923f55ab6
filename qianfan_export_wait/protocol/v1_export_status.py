"""V1 export status: ``POST /wenxinworkshop/modelrepo/eval/result/export/info``
``{"exportID": <int or string id>}``, answered ``{"log_id", "result": {...}}``.

States: ``Pending``/``Uploading`` running, ``Done`` done, ``Fail`` failed; anything else
is kept as the server's string, reads as running and is flagged unknown. Errors are
``error_code``/``error_msg`` in the body (often with HTTP 200), classified by
``classify.classify_response``. The record is today's ``ExportStatus``, parsed as today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ResponseFormatError, UnexpectedAnswerError
from ..models import (
    MAX_INT_EXPORT_ID,
    ExportId,
    ExportStatus,
    describe_value,
    parse_export_status,
)
from ._common import Now, Request, decoded_answer, id_argument, json_body

__all__ = ["PATH", "V1ExportStatus"]

PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"


@dataclass(frozen=True, slots=True)
class V1ExportStatus:
    """The V1 export-status call (an ``Operation[ExportId, ExportStatus]``)."""

    name: str = "export_status"
    api: str = "v1"

    def build(self, args: ExportId) -> Request:
        """The request for export ``args`` (int ``exportID`` or string ``exportIDStr``)."""
        if type(args) is int and 0 < args <= MAX_INT_EXPORT_ID:  # the usual case, made cheap
            return Request("v1.export_status", "POST", PATH, (), b'{"exportID":%d}' % args)
        export_id = id_argument(args, "export id")
        return Request("v1.export_status", "POST", PATH, (), json_body({"exportID": export_id}))

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: ExportId | None = None,
    ) -> ExportStatus:
        """The ``ExportStatus`` in an answer, or the classified error."""
        decoded = decoded_answer(self.api, status, headers, body, now)
        try:
            record = parse_export_status(decoded)
        except ResponseFormatError as exc:
            exc.http_status = status
            raise
        if args is not None and not record.matches(args):
            raise UnexpectedAnswerError(
                f"answer is for export {describe_value(record.export_id)}/"
                f"{describe_value(record.export_id_str)}, not {describe_value(args)}",
                asked=args,
                answered=record.export_id if type(args) is int else record.export_id_str,
                log_id=record.log_id,
                http_status=status,
            )
        return record
