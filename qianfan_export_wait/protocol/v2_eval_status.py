"""V2 evaluation status: ``POST /v2/eval?Action=DescribeEvalTask`` ``{"taskId": "ame-..."}``
(the call Baidu's Python SDK sends as ``Eval.V2.describe_eval_task``), answered
``{"requestId", "result": {..., "state"}}``.

States: ``Queued``, ``Running``, ``RunningWithManualBegin``,
``RunningWithMetricsCalculating``, ``Stopping`` running; ``Successed`` (sic) and
``Succeeded`` (and V1's ``Done``) done; ``Failed``, ``Stopped`` failed; V1's
``PartlyDone`` as in V1. An unknown state reads as running and is flagged. Errors are
``{"requestId", "code", "message"}`` with HTTP >= 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._common import (
    V2_EVAL_PATH,
    Now,
    Request,
    answer_result,
    json_body,
    string_id_argument,
)
from ._eval import eval_record
from .records import EvalStatus

__all__ = ["ACTION", "V2EvalStatus"]

ACTION = "DescribeEvalTask"


@dataclass(frozen=True, slots=True)
class V2EvalStatus:
    """The V2 evaluation-status call (an ``Operation[str, EvalStatus]``)."""

    partly_done_is_done: bool = True
    name: str = "eval_status"
    api: str = "v2"

    def build(self, args: str) -> Request:
        """The request for evaluation task ``args`` (the string ``ame-...`` id)."""
        task_id = string_id_argument(args, "evaluation task id", "ame-...")
        return Request(
            "v2.eval_status",
            "POST",
            V2_EVAL_PATH,
            (("Action", ACTION),),
            json_body({"taskId": task_id}),
        )

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: str | None = None,
    ) -> EvalStatus:
        """The ``EvalStatus`` in an answer, or the classified error."""
        result, request_id = answer_result(self.api, status, headers, body, now)
        return eval_record(
            status,
            result,
            request_id,
            api=self.api,
            expected=args,
            partly_done_is_done=self.partly_done_is_done,
        )
