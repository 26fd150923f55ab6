"""Export states, the status record, the id rule, response parsing and the record of a
verified file. Pure code."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ResponseFormatError

__all__ = [
    "MAX_EXPORT_ID_LENGTH",
    "MAX_INT_EXPORT_ID",
    "DownloadRecord",
    "ExportId",
    "ExportState",
    "ExportStatus",
    "Phase",
    "describe_value",
    "id_file_lines",
    "parse_export_id",
    "parse_export_status",
    "validate_export_id",
]

ExportId = int | str
"""An export task id: the int ``exportID`` or the string ``exportIDStr`` (``amemt-...``)."""

MAX_EXPORT_ID_LENGTH = 128
MAX_INT_EXPORT_ID = 2**63 - 1
"""The largest int ``exportID`` the API takes (a signed 64-bit integer)."""
_NUMERIC = re.compile(r"[+-]?[0-9]+")
_BOM = b"\xef\xbb\xbf"


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


class Phase(str, enum.Enum):
    """Where a task stands, whatever the API generation spells its state:
    still ``running``, or ended ``done`` or ``failed``."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change phase again."""
        return self is not Phase.RUNNING

    def __str__(self) -> str:
        return self.value


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
        if not 1 <= value <= MAX_INT_EXPORT_ID:
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


def parse_export_id(text: str) -> ExportId:
    """The export id written as ``text`` (a command-line argument, a line of a file):
    the one rule for ids given as text.

    Surrounding whitespace is ignored. Plain digits are the int ``exportID``: from 1 to
    2**63-1, written without leading zeros (``007`` is refused rather than read as 7,
    so that ``7`` and ``007`` never silently become one export). Anything else is the
    string ``exportIDStr``, checked by ``validate_export_id``. Raises ``ValueError``
    saying why and naming the limit.
    """
    if not isinstance(text, str):
        raise ValueError(f"export id text must be a str, got {type(text).__name__}")
    stripped = text.strip()
    if not _NUMERIC.fullmatch(stripped):
        return validate_export_id(stripped)
    if stripped[0] == "+":
        raise ValueError(
            f"export id {describe_value(stripped)} has a sign; write a numeric exportID "
            "in plain digits"
        )
    significant = stripped.lstrip("0")
    if (
        stripped[0] == "-"
        or not significant
        or len(significant) > len(str(MAX_INT_EXPORT_ID))
        or int(significant) > MAX_INT_EXPORT_ID
    ):
        raise ValueError(
            f"export id {describe_value(stripped)} is out of range; a numeric exportID is "
            f"a whole number from 1 to {MAX_INT_EXPORT_ID} (2**63-1)"
        )
    if significant != stripped:
        raise ValueError(
            f"export id {describe_value(stripped)} has leading zeros; write {significant} "
            "(they are refused so that 7 and 007 never silently become one export)"
        )
    return int(significant)


def id_file_lines(lines: Iterable[bytes], *, first: int = 1) -> Iterator[tuple[int, str]]:
    """``(line number, id text)`` for each id in the lines of an ids file, as bytes
    (``first``: the number of the first of them).

    The file is UTF-8, with or without a byte-order mark; lines end in LF or CRLF (a CR
    anywhere else stays in the line, and makes its id invalid); ``#`` starts a comment
    that runs to the end of the line; blank lines are skipped. Each id text then
    follows ``parse_export_id``. Raises ``ValueError`` naming a line that is not UTF-8.
    """
    for number, raw in enumerate(lines, first):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"line {number} is not UTF-8 text") from None
        text = line.split("#", 1)[0].strip()
        if text:
            yield number, text


def _optional_str(result: Mapping[str, Any], key: str) -> str | None:
    value = result.get(key)
    return value if isinstance(value, str) else None


def _optional_int(result: Mapping[str, Any], key: str) -> int | None:
    value = result.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """One status answer: the documented fields, typed, plus ``raw``, the untouched result.

    ``api`` says which generation answered (``"v1"`` or ``"v2"``). A V2 answer's state is
    normalized onto ``ExportState`` (``Succeeded`` is ``DONE``, ``Queued`` is
    ``PENDING``...), its ``taskId`` is ``export_id_str`` and ``export_id`` is 0 (V2 has no
    numeric id); ``server_state`` then keeps the state as the server spelled it.
    """

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
    api: str = "v1"
    server_state: str | None = None

    @property
    def is_terminal(self) -> bool:
        """``Done`` or ``Fail``; an unknown state string is not terminal."""
        return isinstance(self.state, ExportState) and self.state.is_terminal

    @property
    def state_name(self) -> str:
        """The state as the server spelled it."""
        if self.server_state is not None:
            return self.server_state
        return self.state.value if isinstance(self.state, ExportState) else self.state

    @property
    def state_is_known(self) -> bool:
        """Whether the state is one of the documented ones (an unknown one reads as running)."""
        return isinstance(self.state, ExportState)

    @property
    def phase(self) -> Phase:
        """``done`` for ``Done``, ``failed`` for ``Fail``, else ``running``."""
        if self.state is ExportState.DONE:
            return Phase.DONE
        if self.state is ExportState.FAIL:
            return Phase.FAILED
        return Phase.RUNNING

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


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """A file on disk, verified: ``path``, ``bytes``, ``sha256`` (hex); ``fetched`` is
    ``False`` when it was already complete; ``extracted_to`` the folder a zip went to."""

    export_id: ExportId
    path: str
    bytes: int
    sha256: str
    fetched: bool = True
    extracted_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "bytes", "sha256"}`` (plus ``extracted_to`` when unpacked): the
        ``"file"`` object of a JSON line."""
        record: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.extracted_to is not None:
            record["extracted_to"] = self.extracted_to
        return record
