"""``ClientStats``: what ``ExportStatusClient`` counts."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ClientStats"]


@dataclass(slots=True)
class ClientStats:
    """Counters since the client was made: HTTP requests sent and how they ended."""

    requests: int = 0
    succeeded: int = 0
    throttled: int = 0
    transient_errors: int = 0
    retries: int = 0
    clock_resyncs: int = 0
    unknown_states: dict[str, int] = field(default_factory=dict)
    """Answers per export state outside the known ones (each read as running)."""
