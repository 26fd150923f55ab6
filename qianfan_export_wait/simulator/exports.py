"""Simulated export tasks and their table. Pure: the state at a moment is computed from
each export's schedule when asked, so nothing runs in the background and 100,000 exports
cost a few tens of megabytes.

Every export's ``exportIDStr`` is derived from its int ``exportID`` by an invertible
scramble, so looking up either form needs no second index.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ..models import ExportState
from .files import FileKind, file_kind_for

__all__ = [
    "DEFAULT_EXPORT_CONTENT",
    "EXPORT_TYPES",
    "FILES_PREFIX",
    "V2_EXPORT_STATES",
    "V2_STORAGE_PATH_FIELD",
    "V2_STORAGE_TYPES",
    "VOLUME_ID",
    "ExportTable",
    "ExportType",
    "SimExport",
    "export_id_from_str",
    "export_id_str_for",
]

ExportType = Literal["local", "storage"]
EXPORT_TYPES: tuple[ExportType, ...] = ("local", "storage")

PENDING = ExportState.PENDING.value
UPLOADING = ExportState.UPLOADING.value
DONE = ExportState.DONE.value
FAIL = ExportState.FAIL.value
TERMINAL_STATES = (DONE, FAIL)

V2_EXPORT_STATES: dict[str, str] = {
    PENDING: "Queued",
    UPLOADING: "Running",
    DONE: "Succeeded",
    FAIL: "Failed",
}
"""A V1 export state -> the V2 ``DescribeEvalResultExportTask`` state."""

V2_STORAGE_TYPES: dict[str, str] = {"local": "sysStorage", "storage": "BOS"}
"""A V1 ``exportType`` -> the V2 ``storageType``."""

V2_STORAGE_PATH_FIELD = "storagePath"
"""The V2 field holding a BOS export's full path. Baidu's pages describe the field ("the full
storage path") without naming it in the excerpts we have, and no SDK wraps the call; this is
the name Qianfan's other console answers give a storage path (``storageInfo.storagePath``).
Its value is ``bos:/<bucket>/<path>``, the form Baidu's SDK writes full BOS paths in."""

DEFAULT_EXPORT_CONTENT = ("prompt", "prediction", "completion", "metrics")
"""What an export holds unless its create said otherwise (the official SDK's default)."""

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_STR_DIGITS = 12
_MODULUS: int = 36**_STR_DIGITS
# Near 36**12 times the golden ratio, so consecutive ids land far apart; odd and not a
# multiple of 3, hence invertible modulo 36**12.
_MULTIPLIER = 2928480718740974081
_INVERSE: int = pow(_MULTIPLIER, -1, _MODULUS)
_OFFSET = 0x2545F4914F6CDD1D % _MODULUS
_EXPORT_STR_RE = re.compile(r"amemt-[0-9a-z]{12}")
_MAX_EXPORT_ID = 2**63 - 1
_RESULT_ID_BASE = 300
VOLUME_ID = "modelrepo-simulated"
_EXPORT_DIR = "qianfan_modelrepo_offline/workspace/model_eval_result_export"
FILES_PREFIX = "/_files/"


def _base36(number: int, digits: int) -> str:
    chars = []
    for _ in range(digits):
        number, remainder = divmod(number, 36)
        chars.append(_ALPHABET[remainder])
    return "".join(reversed(chars))


def export_id_str_for(export_id: int) -> str:
    """The ``amemt-`` + 12 lowercase letters/digits string id of an int export id."""
    scrambled = (export_id * _MULTIPLIER + _OFFSET) % _MODULUS
    # Reversed digits put the fastest-changing digit first, as random-looking ids do.
    return "amemt-" + _base36(scrambled, _STR_DIGITS)[::-1]


def export_id_from_str(text: str) -> int | None:
    """The int id whose string id is ``text`` (modulo ``36**12``), or ``None`` if malformed."""
    if not _EXPORT_STR_RE.fullmatch(text):
        return None
    return ((int(text[:5:-1], 36) - _OFFSET) * _INVERSE) % _MODULUS


class SimExport:
    """One simulated export: Pending until ``uploading_at``, Uploading until ``finish_at``,
    then ``final_state`` for good. Times are ``time.monotonic()`` values; a held export
    has ``finish_at = inf``."""

    __slots__ = (
        "_clock",
        "created_at",
        "evaluation_id",
        "export_content",
        "export_id",
        "export_type",
        "final_state",
        "finish_at",
        "first_answered_at",
        "polls",
        "uploading_at",
    )

    def __init__(
        self,
        export_id: int,
        *,
        created_at: float,
        uploading_at: float,
        finish_at: float,
        final_state: str,
        export_type: ExportType,
        clock: Callable[[], float],
        evaluation_id: int | None = None,
        export_content: tuple[str, ...] = DEFAULT_EXPORT_CONTENT,
    ) -> None:
        self.export_id = export_id
        # The evaluation a create call made it for; ``None`` for exports added directly.
        self.evaluation_id = evaluation_id
        self.export_content = export_content
        self.created_at = created_at
        self.uploading_at = uploading_at
        self.finish_at = finish_at
        self.final_state = final_state
        self.export_type: ExportType = export_type
        self.polls = 0
        # When it was first answered since the counters were last reset.
        self.first_answered_at: float | None = None
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"SimExport(export_id={self.export_id}, state={self.state!r}, "
            f"final_state={self.final_state!r}, export_type={self.export_type!r})"
        )

    @property
    def export_id_str(self) -> str:
        """The ``exportIDStr`` (``amemt-...``)."""
        return export_id_str_for(self.export_id)

    @property
    def result_id(self) -> int:
        """The evaluation result's ``id`` (its evaluation's, when a create call made it)."""
        if self.evaluation_id is not None:
            return self.evaluation_id
        return _RESULT_ID_BASE + self.export_id

    @property
    def result_id_str(self) -> str:
        """The evaluation result's ``idStr`` (``ame-...``)."""
        if self.evaluation_id is not None:
            return "ame-" + export_id_str_for(self.evaluation_id)[6:]
        return "ame-" + export_id_str_for(self.result_id)[6:14]

    @property
    def storage_path(self) -> str:
        """The V2 full path of a BOS export's file (``bos:/<bucket>/<path>``)."""
        return f"bos:/{VOLUME_ID}/{self.export_path}"

    @property
    def file_kind(self) -> FileKind:
        """``zip`` for every third export, else ``csv``."""
        return file_kind_for(self.export_id)

    @property
    def file_name(self) -> str:
        """The exported file's name, the last part of ``export_path``."""
        return f"simulated_{self.result_id}_{self.export_id}.{self.file_kind}"

    @property
    def export_path(self) -> str:
        """Where the exported file lands, without the bucket name."""
        return f"{_EXPORT_DIR}/{self.file_name}"

    @property
    def file_path(self) -> str:
        """The simulator's own path serving a local export's file (before the presign query)."""
        return f"{FILES_PREFIX}{self.export_id}/{self.file_name}"

    @property
    def held(self) -> bool:
        """Whether the export waits for ``complete``/``fail`` instead of a schedule."""
        return math.isinf(self.finish_at)

    def state_at(self, now: float) -> str:
        """The state at monotonic time ``now``."""
        if now >= self.finish_at:
            return self.final_state
        if now >= self.uploading_at:
            return UPLOADING
        return PENDING

    @property
    def state(self) -> str:
        """The state now."""
        return self.state_at(self._clock())

    @property
    def finished_at(self) -> float | None:
        """The monotonic time the export became terminal, or ``None`` if it has not yet."""
        return self.finish_at if self._clock() >= self.finish_at else None

    def result_at(self, now: float, download_url: str = "") -> dict[str, Any]:
        """The ``result`` object the API returns at monotonic time ``now``; a Done local
        export carries ``download_url``."""
        state = self.state_at(now)
        local = self.export_type == "local"
        return {
            "id": self.result_id,
            "idStr": self.result_id_str,
            "exportID": self.export_id,
            "exportIDStr": self.export_id_str,
            "state": state,
            "exportType": self.export_type,
            "volumeId": "" if local else VOLUME_ID,
            "exportPath": self.export_path,
            "downloadUrl": download_url if local and state == DONE else "",
        }

    def v2_result_at(self, now: float, download_url: str = "") -> dict[str, Any]:
        """The ``result`` of a V2 ``DescribeEvalResultExportTask`` answer at ``now``; a
        Succeeded sysStorage export carries ``download_url``."""
        state = self.state_at(now)
        local = self.export_type == "local"
        return {
            "taskId": self.export_id_str,
            "evalId": self.result_id_str,
            "exportContent": list(self.export_content),
            "state": V2_EXPORT_STATES[state],
            "storageType": V2_STORAGE_TYPES[self.export_type],
            V2_STORAGE_PATH_FIELD: "" if local else self.storage_path,
            "downloadUrl": download_url if local and state == DONE else "",
        }

    def summary_at(self, now: float) -> dict[str, Any]:
        """A compact JSON-able record for statistics."""
        return {
            "evaluation_id": self.evaluation_id,
            "exportID": self.export_id,
            "exportIDStr": self.export_id_str,
            "state": self.state_at(now),
            "final_state": self.final_state,
            "finish_at": None if self.held else self.finish_at,
            "finished_at": self.finish_at if now >= self.finish_at else None,
            "polls": self.polls,
            "first_answered_at": self.first_answered_at,
        }


class ExportTable:
    """All simulated exports by int id; finds one by either id form."""

    __slots__ = ("_by_id", "_clock", "_next_id", "_overflow_strs")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._by_id: dict[int, SimExport] = {}
        # String ids of exports whose int id is beyond what the scramble inverts.
        self._overflow_strs: dict[str, int] = {}
        self._clock = clock
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[SimExport]:
        return iter(self._by_id.values())

    @property
    def by_id(self) -> dict[int, SimExport]:
        """The exports by int id (do not modify)."""
        return self._by_id

    def add(
        self,
        *,
        finish_after: float | None,
        fail: bool,
        export_type: ExportType,
        uploading_after: float | None,
        export_id: int | None,
        now: float,
        evaluation_id: int | None = None,
        export_content: tuple[str, ...] = DEFAULT_EXPORT_CONTENT,
    ) -> SimExport:
        """Create an export finishing ``finish_after`` seconds after ``now`` (``None``: held),
        for the evaluation ``evaluation_id`` when a create call makes it."""
        if export_type not in EXPORT_TYPES:
            raise ValueError(f"export_type must be 'local' or 'storage', got {export_type!r}")
        if export_id is None:
            export_id = self._next_id
        elif (
            isinstance(export_id, bool)
            or not isinstance(export_id, int)
            or not 1 <= export_id <= _MAX_EXPORT_ID
        ):
            raise ValueError(f"export_id must be an int from 1 to 2**63-1, got {export_id!r}")
        if export_id in self._by_id:
            raise ValueError(f"export {export_id} already exists")
        finish_delay = math.inf if finish_after is None else float(finish_after)
        if not finish_delay >= 0:
            raise ValueError(f"finish_after must be >= 0 seconds or None, got {finish_after!r}")
        if uploading_after is None:
            uploading_delay = 1.0 if finish_after is None else finish_delay / 3
        else:
            uploading_delay = float(uploading_after)
        if not 0 <= uploading_delay <= finish_delay:
            raise ValueError(
                f"uploading_after must be within [0, finish_after], got {uploading_after!r}"
            )
        export = SimExport(
            export_id,
            created_at=now,
            uploading_at=now + uploading_delay,
            finish_at=now + finish_delay,
            final_state=FAIL if fail else DONE,
            export_type=export_type,
            clock=self._clock,
            evaluation_id=evaluation_id,
            export_content=export_content,
        )
        self._by_id[export_id] = export
        if export_id >= _MODULUS:
            self._overflow_strs[export.export_id_str] = export_id
        self._next_id = max(self._next_id, export_id + 1)
        return export

    def find_by_file(self, file_name: str) -> SimExport | None:
        """The export whose ``file_name`` is ``file_name``, or ``None``."""
        stem, _, _ = file_name.rpartition(".")
        _, _, id_text = stem.rpartition("_")
        if not (id_text.isascii() and id_text.isdigit()) or len(id_text) > 19:
            return None
        export = self._by_id.get(int(id_text))
        return export if export is not None and export.file_name == file_name else None

    def find(self, key: object) -> SimExport | None:
        """The export an API ``exportID`` value names: an int id or an ``amemt-`` string.

        A numeric string is a string id, not the int id; ``bool`` and other types name none.
        """
        if isinstance(key, bool):
            return None
        if isinstance(key, int):
            return self._by_id.get(key)
        if isinstance(key, str):
            overflow = self._overflow_strs.get(key)
            if overflow is not None:
                return self._by_id.get(overflow)
            decoded = export_id_from_str(key)
            return None if decoded is None else self._by_id.get(decoded)
        return None

    def get(self, key: int | str) -> SimExport:
        """Like ``find`` but raises ``KeyError`` for an unknown id."""
        export = self.find(key)
        if export is None:
            raise KeyError(f"no simulated export {key!r}")
        return export

    def settle(self, key: int | str, final_state: str, now: float) -> SimExport:
        """Make an export reach ``final_state`` at ``now`` (a no-op if it already has).

        Raises ``ValueError`` if it already reached the other terminal state: terminal
        states never change.
        """
        export = self.get(key)
        if now >= export.finish_at:
            if export.final_state != final_state:
                raise ValueError(
                    f"export {export.export_id} already reached {export.final_state}; "
                    "terminal states never change"
                )
            return export
        export.final_state = final_state
        export.finish_at = now
        return export

    def hold(self, key: int | str, now: float) -> SimExport:
        """Keep an export from finishing until it is settled by hand."""
        export = self.get(key)
        if now >= export.finish_at:
            raise ValueError(
                f"export {export.export_id} already reached {export.final_state}; it cannot be held"
            )
        export.finish_at = math.inf
        return export

    def count_by_state(self, now: float) -> dict[str, int]:
        """How many exports are in each state at ``now``."""
        counts = dict.fromkeys((PENDING, UPLOADING, DONE, FAIL), 0)
        for export in self._by_id.values():
            state = export.state_at(now)
            counts[state] = counts.get(state, 0) + 1
        return counts
