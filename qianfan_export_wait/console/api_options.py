"""The ``--api`` option of ``status``, ``wait`` and ``export`` (environment variable
``QIANFAN_EXPORT_WAIT_API``), the unknown-state option, and the id check they imply."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable
from typing import Any

from .._checks import check_number
from ..errors import ConfigurationError
from ..models import ExportId
from ..protocol import APIS
from .exits import UsageError

__all__ = ["API_ENV", "add_api_options", "api_client_options", "check_ids_for_api", "log_unknown"]

API_ENV = "QIANFAN_EXPORT_WAIT_API"
logger = logging.getLogger("qianfan_export_wait")


def _seconds(text: str) -> float:
    try:
        value = float(text)
        check_number("--unknown-state-timeout", value, inclusive=True)
        return value
    except (ValueError, ConfigurationError) as exc:
        raise argparse.ArgumentTypeError(
            f"--unknown-state-timeout must be a number of seconds, got {text!r}"
        ) from exc


def add_api_options(group: argparse._ArgumentGroup) -> None:
    """Add ``--api`` and ``--unknown-state-timeout`` to ``group``."""
    group.add_argument(
        "--api",
        choices=APIS,
        default=None,
        help=f"the generation of Qianfan's API to call: v1 (/wenxinworkshop/..., ids like "
        f"96 or amemt-...) or v2 (/v2/eval?Action=..., string ids) (default: ${API_ENV}, "
        "else v1)",
    )
    group.add_argument(
        "--unknown-state-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="end an export that stays in a state this tool does not know for S seconds "
        "as error (default: treat such states as running, and log each once)",
    )


def api_of(args: argparse.Namespace) -> str:
    """The generation chosen: ``--api``, else ``$QIANFAN_EXPORT_WAIT_API``, else ``v1``."""
    chosen = getattr(args, "api", None)
    if chosen is None:
        chosen = os.environ.get(API_ENV, "").strip().lower() or "v1"
        if chosen not in APIS:
            raise UsageError(f"${API_ENV} is {chosen!r}; expected one of {', '.join(APIS)}")
    return str(chosen)


def api_client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ExportStatusClient`` keywords these options ask for."""
    return {
        "api": api_of(args),
        "unknown_state_timeout": getattr(args, "unknown_state_timeout", None),
    }


def check_ids_for_api(ids: Iterable[ExportId], api: str) -> None:
    """``UsageError`` naming the first id the generation ``api`` cannot take (V2 takes
    only string task ids)."""
    if api != "v2":
        return
    for export_id in ids:
        if not isinstance(export_id, str):
            raise UsageError(
                f"export id {export_id!r} is a V1 numeric exportID; --api v2 takes the "
                "string task id (amemt-...)"
            )


def log_unknown(counts: dict[str, int]) -> None:
    """Log, at the end of a run, the answers that came in states this tool does not know."""
    if counts:
        shown = ", ".join(f"{state!r}: {n}" for state, n in sorted(counts.items()))
        logger.warning("answers in states this tool does not know (read as running): %s", shown)
