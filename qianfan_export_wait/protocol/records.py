"""The records the evaluation and create calls return (export statuses are today's
``models.ExportStatus``). Frozen and slotted; ``raw`` keeps the untouched result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models import ExportId, Phase

__all__ = ["CreatedExport", "EvalStatus"]


@dataclass(frozen=True, slots=True)
class EvalStatus:
    """One evaluation status answer: its id, the state as sent, the ``phase`` it means,
    and whether that state is a known one (an unknown state reads as running)."""

    eval_id: ExportId
    state: str
    phase: Phase
    state_is_known: bool
    api: str
    log_id: str | None
    raw: Mapping[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """Whether the evaluation has ended (done or failed)."""
        return self.phase.is_terminal

    @property
    def request_id(self) -> str | None:
        """V2's name for ``log_id``."""
        return self.log_id


@dataclass(frozen=True, slots=True)
class CreatedExport:
    """A created export: the id to poll it with (``export_id``: V1 ``exportIDStr``, else
    ``exportID``; V2 ``taskId``), the V1 numeric ``exportID`` when sent, and ``raw``."""

    export_id: ExportId
    export_id_int: int | None
    export_id_str: str | None
    api: str
    log_id: str | None
    raw: Any = field(repr=False, hash=False, compare=False)

    @property
    def request_id(self) -> str | None:
        """V2's name for ``log_id``."""
        return self.log_id
