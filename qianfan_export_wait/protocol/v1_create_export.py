"""V1 create export: ``POST /wenxinworkshop/modelrepo/eval/result/export`` with ``id``
(the evaluation), ``exportType`` (``local``|``storage``), ``exportOpt`` (``total``|``part``),
``exportContent``, ``volumeId`` (for ``storage``), ``resultIds`` (1-100, for ``part``);
answered ``{"log_id", "result": {"exportID", "exportIDStr"}}``.

Creating is not idempotent. A throttle, auth or invalid answer created nothing and is
raised as such; a server error or an unreadable answer may have created the export and is
raised as ``CreateUncertainError``, as is a success that names no id. A timeout or reset
mid-request is the caller's to classify (as ``CreateUncertainError`` too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, CreateUncertainError
from ..models import ExportId, describe_value
from . import _create
from ._common import (
    Now,
    Request,
    create_result,
    id_argument,
    json_body,
    optional_str,
    usable_id,
)
from .records import CreatedExport

__all__ = ["EXPORT_CONTENTS", "MAX_RESULT_IDS", "PATH", "V1CreateExport", "V1CreateExportArgs"]

PATH = "/wenxinworkshop/modelrepo/eval/result/export"
EXPORT_TYPES = ("local", "storage")
EXPORT_OPTS = ("total", "part")
EXPORT_CONTENTS = ("prompt", "prediction", "completion", "metrics")
MAX_RESULT_IDS = 100
_OPERATION = "v1.create_export"


@dataclass(frozen=True, slots=True)
class V1CreateExportArgs:
    """What to export, checked on construction (``ConfigurationError`` names a bad value).
    The defaults are the official SDK's: ``local``, ``total``, all four contents."""

    eval_id: ExportId
    export_type: str = "local"
    export_opt: str = "total"
    export_content: Iterable[str] = EXPORT_CONTENTS
    volume_id: str | None = None
    result_ids: Iterable[str] | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "eval_id", id_argument(self.eval_id, "evaluation id"))
        export_type = _create.choice(self.export_type, "export type", EXPORT_TYPES)
        set_field(self, "export_type", export_type)
        export_opt = _create.choice(self.export_opt, "export option", EXPORT_OPTS)
        set_field(self, "export_opt", export_opt)
        set_field(self, "export_content", _create.contents(self.export_content, EXPORT_CONTENTS))
        if export_type == "storage":
            set_field(self, "volume_id", _create.name(self.volume_id, "volume id (bucket)"))
        elif self.volume_id is not None:
            raise ConfigurationError(
                f"volume id {describe_value(self.volume_id)} given for a local export; "
                "it is only for export_type='storage'"
            )
        if export_opt == "part":
            set_field(self, "result_ids", _result_ids(self.result_ids))
        elif self.result_ids is not None:
            raise ConfigurationError(
                "result ids given for export_opt='total'; they are only for export_opt='part'"
            )


def _result_ids(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"result ids {describe_value(value)} is not a list; export_opt='part' needs "
            f"1 to {MAX_RESULT_IDS} result id strings"
        )
    ids = tuple(value)
    if not 1 <= len(ids) <= MAX_RESULT_IDS:
        raise ConfigurationError(
            f"{len(ids)} result ids given; export_opt='part' takes 1 to {MAX_RESULT_IDS}"
        )
    for item in ids:
        if not isinstance(item, str) or not item or not item.isprintable():
            raise ConfigurationError(f"result id {describe_value(item)} is not an id string")
    return ids


@dataclass(frozen=True, slots=True)
class V1CreateExport:
    """The V1 create-export call (an ``Operation[V1CreateExportArgs, CreatedExport]``)."""

    name: str = "create_export"
    api: str = "v1"

    def build(self, args: V1CreateExportArgs) -> Request:
        """The request creating the export ``args`` describes."""
        if not isinstance(args, V1CreateExportArgs):
            raise ConfigurationError(
                f"create arguments are a {type(args).__name__}; expected V1CreateExportArgs"
            )
        payload: dict[str, Any] = {
            "id": args.eval_id,
            "exportType": args.export_type,
            "exportOpt": args.export_opt,
            "exportContent": list(args.export_content),
        }
        if args.volume_id is not None:
            payload["volumeId"] = args.volume_id
        if args.result_ids is not None:
            payload["resultIds"] = list(args.result_ids)
        return Request(_OPERATION, "POST", PATH, (), json_body(payload))

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: V1CreateExportArgs | None = None,
    ) -> CreatedExport:
        """The ``CreatedExport`` in an answer, or the classified error."""
        result, log_id = create_result(self.api, status, headers, body, now)
        return _created(status, result, log_id)


def _created(status: int, result: Mapping[str, Any], log_id: str | None) -> CreatedExport:
    export_id_int = usable_id(result.get("exportID"), int)
    export_id_str = usable_id(optional_str(result, "exportIDStr"), str)
    export_id: ExportId | None = export_id_str if export_id_str is not None else export_id_int
    if export_id is None:
        raise CreateUncertainError(
            "the create answered success but named no exportID or exportIDStr; "
            "the export may exist",
            operation=_OPERATION,
            log_id=log_id,
            http_status=status,
        )
    return CreatedExport(
        export_id=export_id,
        export_id_int=export_id_int,
        export_id_str=export_id_str,
        api="v1",
        log_id=log_id,
        raw=result,
    )
