"""Export states, the status record, id validation and response parsing. Pure code."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ResponseFormatError

__all__ = [
    "MAX_EXPORT_ID_LENGTH",
    "ExportId",
    "ExportState",
    "ExportStatus",
    "describe_value",
    "parse_export_status",
    "validate_export_id",
]

ExportId = int | str
"""An export task id: the int ``exportID`` or the string ``exportIDStr`` (``amemt-...``)."""

MAX_EXPORT_ID_LENGTH = 128
_MAX_INT_ID = 2**63 - 1


class ExportState(str, enum.Enum):
    """The documented export states. Only ``Done`` and ``Fail`` are terminal."""

    PENDING = "Pending"
    UPLOADING = "Uploading"
    DONE = "Done"
    FAIL = "Fail"

    @property
    def is_terminal(self) -> bool:
        """Whether the export will not change state again."""
        return self in (ExportState.DONE, ExportState.FAIL)

    def __str__(self) -> str:
        return self.value


_STATES = {state.value: state for state in ExportState}


def describe_value(value: object) -> str:
    """``repr(value)``, cut short for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def validate_export_id(value: object) -> ExportId:
    """Return ``value`` if it is a usable export id, else raise ``ValueError`` saying why.

    Usable: an ``int`` from 1 to 2**63-1 (not a ``bool``), or a string of 1 to 128
    printable characters with no surrounding whitespace.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(
            f"export id {describe_value(value)} is a {type(value).__name__}; "
            "expected an int exportID (e.g. 96) or a string exportIDStr (e.g. 'amemt-...')"
        )
    if isinstance(value, int):
        if not 1 <= value <= _MAX_INT_ID:
            raise ValueError(
                f"export id {describe_value(value)} is out of range; "
                "expected an int from 1 to 2**63-1"
            )
        return value
    if not value.strip():
        raise ValueError(f"export id {describe_value(value)} is empty; expected a non-empty string")
    if len(value) > MAX_EXPORT_ID_LENGTH:
        raise ValueError(
            f"export id {describe_value(value)} is longer than {MAX_EXPORT_ID_LENGTH} characters"
        )
    if value != value.strip():
        raise ValueError(f"export id {describe_value(value)} has leading or trailing whitespace")
    if not value.isprintable():
        raise ValueError(
            f"export id {describe_value(value)} contains control characters (newline, NUL, ...)"
        )
    return value


def _optional_str(result: Mapping[str, Any], key: str) -> str | None:
    value = result.get(key)
    return value if isinstance(value, str) else None


def _optional_int(result: Mapping[str, Any], key: str) -> int | None:
    value = result.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """One status answer: the documented fields, typed, plus ``raw``, the untouched result."""

    export_id: int
    export_id_str: str | None
    id: int | None
    id_str: str | None
    state: ExportState | str
    export_type: str | None
    volume_id: str | None
    export_path: str | None
    download_url: str | None
    log_id: str | None
    raw: Mapping[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """``Done`` or ``Fail``; an unknown state string is not terminal."""
        return isinstance(self.state, ExportState) and self.state.is_terminal

    @property
    def state_name(self) -> str:
        """The state as the server spelled it."""
        return self.state.value if isinstance(self.state, ExportState) else self.state

    def matches(self, export_id: ExportId) -> bool:
        """Whether this record answers for ``export_id`` (either id form)."""
        if isinstance(export_id, int):
            return self.export_id == export_id
        return self.export_id_str == export_id or str(self.export_id) == export_id


def parse_export_status(body: object) -> ExportStatus:
    """Build an ``ExportStatus`` from a decoded success body, or raise ``ResponseFormatError``."""
    if not isinstance(body, Mapping):
        raise ResponseFormatError(
            f"response body is a JSON {type(body).__name__}, expected an object"
        )
    log_id_value = body.get("log_id")
    log_id = None if log_id_value is None else str(log_id_value)[:64]
    result = body.get("result")
    if not isinstance(result, Mapping):
        shape = "missing" if result is None else f"a JSON {type(result).__name__}"
        raise ResponseFormatError(
            f"response 'result' is {shape}, expected an object", log_id=log_id
        )
    state_value = result.get("state")
    if not isinstance(state_value, str) or not state_value:
        raise ResponseFormatError(
            f"result.state is {describe_value(state_value)}, expected a non-empty string",
            log_id=log_id,
        )
    export_id = result.get("exportID")
    if isinstance(export_id, bool) or not isinstance(export_id, int):
        raise ResponseFormatError(
            f"result.exportID is {describe_value(export_id)}, expected an int", log_id=log_id
        )
    return ExportStatus(
        export_id=export_id,
        export_id_str=_optional_str(result, "exportIDStr"),
        id=_optional_int(result, "id"),
        id_str=_optional_str(result, "idStr"),
        state=_STATES.get(state_value, state_value),
        export_type=_optional_str(result, "exportType"),
        volume_id=_optional_str(result, "volumeId"),
        export_path=_optional_str(result, "exportPath"),
        download_url=_optional_str(result, "downloadUrl"),
        log_id=log_id,
        raw=result,
    )
