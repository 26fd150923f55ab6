"""V2 create export: ``POST /v2/eval?Action=CreateEvalResultExportTask`` with ``evalId``,
``storageType`` (``BOS``|``sysStorage``, the default), ``bucket`` (for ``BOS``) and
``exportContent`` (any of ``prompt``, ``prediction``, ``completion``, ``metrics``,
``system``); answered ``{"requestId", "result": {"taskId": "amemt-..."}}`` (a bare string
``result`` is read as the id too).

Creating is not idempotent: as in V1, a throttle, auth or invalid answer created nothing;
a server error, an unreadable answer or a success without a usable id raises
``CreateUncertainError``. A timeout or reset mid-request is the caller's to classify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, CreateUncertainError
from ..models import describe_value
from . import _create
from ._common import (
    V2_EVAL_PATH,
    Now,
    Request,
    create_result,
    json_body,
    string_id_argument,
    usable_id,
)
from .records import CreatedExport

__all__ = [
    "ACTION",
    "DEFAULT_EXPORT_CONTENTS",
    "EXPORT_CONTENTS",
    "V2CreateExport",
    "V2CreateExportArgs",
]

ACTION = "CreateEvalResultExportTask"
STORAGE_TYPES = ("sysStorage", "BOS")
EXPORT_CONTENTS = ("prompt", "prediction", "completion", "metrics", "system")
DEFAULT_EXPORT_CONTENTS = ("prompt", "prediction", "completion", "metrics")
"""The contents of Baidu's own example request (and V1's defaults)."""
_OPERATION = "v2.create_export"


@dataclass(frozen=True, slots=True)
class V2CreateExportArgs:
    """What to export, checked on construction (``ConfigurationError`` names a bad value)."""

    eval_id: str
    storage_type: str = "sysStorage"
    bucket: str | None = None
    export_content: Iterable[str] = DEFAULT_EXPORT_CONTENTS

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "eval_id", string_id_argument(self.eval_id, "evaluation id", "ame-..."))
        storage_type = _create.choice(self.storage_type, "storage type", STORAGE_TYPES)
        set_field(self, "storage_type", storage_type)
        set_field(self, "export_content", _create.contents(self.export_content, EXPORT_CONTENTS))
        if storage_type == "BOS":
            set_field(self, "bucket", _create.name(self.bucket, "bucket"))
        elif self.bucket is not None:
            raise ConfigurationError(
                f"bucket {describe_value(self.bucket)} given for storage type 'sysStorage'; "
                "it is only for storage_type='BOS'"
            )


@dataclass(frozen=True, slots=True)
class V2CreateExport:
    """The V2 create-export call (an ``Operation[V2CreateExportArgs, CreatedExport]``)."""

    name: str = "create_export"
    api: str = "v2"

    def build(self, args: V2CreateExportArgs) -> Request:
        """The request creating the export ``args`` describes."""
        if not isinstance(args, V2CreateExportArgs):
            raise ConfigurationError(
                f"create arguments are a {type(args).__name__}; expected V2CreateExportArgs"
            )
        payload: dict[str, Any] = {"evalId": args.eval_id, "storageType": args.storage_type}
        if args.bucket is not None:
            payload["bucket"] = args.bucket
        payload["exportContent"] = list(args.export_content)
        return Request(_OPERATION, "POST", V2_EVAL_PATH, (("Action", ACTION),), json_body(payload))

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: V2CreateExportArgs | None = None,
    ) -> CreatedExport:
        """The ``CreatedExport`` in an answer, or the classified error."""
        result, request_id = create_result(self.api, status, headers, body, now)
        task_id = usable_id(result.get("taskId") if isinstance(result, Mapping) else result, str)
        if task_id is None:
            raise CreateUncertainError(
                f"the create answered success but named no usable taskId "
                f"(result is {describe_value(result)}); the export may exist",
                operation=_OPERATION,
                log_id=request_id,
                http_status=status,
            )
        return CreatedExport(
            export_id=task_id,
            export_id_int=None,
            export_id_str=task_id,
            api="v2",
            log_id=request_id,
            raw=result,
        )
