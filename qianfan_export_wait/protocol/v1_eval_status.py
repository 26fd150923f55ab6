"""V1 evaluation status: ``POST /wenxinworkshop/modelrepo/eval/detail`` ``{"id": <id>}``,
answered ``{"log_id", "result": {..., "state"}}``.

States: ``Pending``, ``Doing``, ``DoingWithManualBegin``, ``Stopping`` running; ``Done``
done; ``PartlyDone`` done unless ``partly_done_is_done=False`` (then failed); ``Failed``,
``Stopped`` failed. V2's names are read too; an unknown state reads as running and is
flagged (``state_is_known=False``). Errors as every V1 call: ``error_code`` in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..models import ExportId
from ._common import (
    Now,
    Request,
    answer_result,
    id_argument,
    json_body,
)
from ._eval import eval_record
from .records import EvalStatus

__all__ = ["PATH", "V1EvalStatus"]

PATH = "/wenxinworkshop/modelrepo/eval/detail"


@dataclass(frozen=True, slots=True)
class V1EvalStatus:
    """The V1 evaluation-status call (an ``Operation[ExportId, EvalStatus]``)."""

    partly_done_is_done: bool = True
    name: str = "eval_status"
    api: str = "v1"

    def build(self, args: ExportId) -> Request:
        """The request for evaluation ``args`` (``ame-...`` or a numeric id)."""
        eval_id = id_argument(args, "evaluation id")
        return Request("v1.eval_status", "POST", PATH, (), json_body({"id": eval_id}))

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: ExportId | None = None,
    ) -> EvalStatus:
        """The ``EvalStatus`` in an answer, or the classified error."""
        result, log_id = answer_result(self.api, status, headers, body, now)
        return eval_record(
            status,
            result,
            log_id,
            api=self.api,
            expected=args,
            partly_done_is_done=self.partly_done_is_done,
        )
