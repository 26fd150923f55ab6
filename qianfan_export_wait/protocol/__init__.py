"""The Qianfan protocol, sans I/O: one module per API call and generation.

Each call is an ``Operation``: ``build(args)`` makes the ``Request`` (method, path, the
query that is signed with it, the JSON body) after checking the arguments
(``ConfigurationError`` names a bad one, before anything is sent); ``read(status,
headers, body, now)`` turns an answer into a record or raises the classified
``QianfanError`` (throttle, transient, auth, invalid; for creates, ``CreateUncertainError``
when the create may have happened). Nothing here opens a socket, awaits or reads a clock:
the caller passes ``now`` (an aware ``datetime``, or POSIX seconds such as ``time.time()``).

=================  ======================================  ==========================
call               V1                                      V2 (``POST /v2/eval``)
=================  ======================================  ==========================
export status      ``v1_export_status``                    ``v2_export_status``
evaluation status  ``v1_eval_status``                      ``v2_eval_status``
create export      ``v1_create_export``                    ``v2_create_export``
=================  ======================================  ==========================

``export_status(api)``, ``eval_status(api)`` and ``create_export(api)`` pick one by
generation. ``skew`` decides when a ``RequestExpired`` answer is signed again, and with
which clock offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..models import ExportId, ExportStatus, Phase, describe_value
from ._common import (
    JSON_CONTENT_TYPE,
    MAX_RESPONSE_BYTES,
    SIGNED_HEADERS,
    Operation,
    Request,
    signed_headers,
)
from .records import CreatedExport, EvalStatus
from .v1_create_export import V1CreateExport, V1CreateExportArgs
from .v1_eval_status import V1EvalStatus
from .v1_export_status import PATH as EXPORT_STATUS_PATH
from .v1_export_status import V1ExportStatus
from .v2_create_export import V2CreateExport, V2CreateExportArgs
from .v2_eval_status import V2EvalStatus
from .v2_export_status import V2ExportStatus

__all__ = [
    "APIS",
    "EXPORT_STATUS_PATH",
    "JSON_CONTENT_TYPE",
    "MAX_RESPONSE_BYTES",
    "SIGNED_HEADERS",
    "CreatedExport",
    "EvalStatus",
    "ExportStatus",
    "Operation",
    "Phase",
    "Request",
    "V1CreateExport",
    "V1CreateExportArgs",
    "V1EvalStatus",
    "V1ExportStatus",
    "V2CreateExport",
    "V2CreateExportArgs",
    "V2EvalStatus",
    "V2ExportStatus",
    "create_export",
    "eval_status",
    "export_status",
    "signed_headers",
]

APIS = ("v1", "v2")
"""The API generations: ``v1`` (``/wenxinworkshop/...``, the default) and ``v2``."""


def _check_api(api: object) -> str:
    if api not in APIS:
        raise ConfigurationError(f"api {describe_value(api)} is not one of 'v1', 'v2'")
    return str(api)


def export_status(api: str = "v1") -> V1ExportStatus | V2ExportStatus:
    """The export-status call of generation ``api``."""
    return V1ExportStatus() if _check_api(api) == "v1" else V2ExportStatus()


def eval_status(
    api: str = "v1", *, partly_done_is_done: bool = True
) -> V1EvalStatus | V2EvalStatus:
    """The evaluation-status call of generation ``api``; ``partly_done_is_done=False``
    makes ``PartlyDone`` a failure."""
    if _check_api(api) == "v1":
        return V1EvalStatus(partly_done_is_done=partly_done_is_done)
    return V2EvalStatus(partly_done_is_done=partly_done_is_done)


def create_export(api: str = "v1") -> V1CreateExport | V2CreateExport:
    """The create-export call of generation ``api``."""
    return V1CreateExport() if _check_api(api) == "v1" else V2CreateExport()


if TYPE_CHECKING:  # mypy proves each call is an Operation
    _CALLS: tuple[
        Operation[ExportId, ExportStatus],
        Operation[str, ExportStatus],
        Operation[ExportId, EvalStatus],
        Operation[str, EvalStatus],
        Operation[V1CreateExportArgs, CreatedExport],
        Operation[V2CreateExportArgs, CreatedExport],
    ] = (
        V1ExportStatus(),
        V2ExportStatus(),
        V1EvalStatus(),
        V2EvalStatus(),
        V1CreateExport(),
        V2CreateExport(),
    )
