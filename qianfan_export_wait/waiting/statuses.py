"""What is known of each export, and the outcomes made of it: the last status seen (packed
small when many exports wait) and the outcomes given to callers, at once or lazily (a
``Pending`` record made into an outcome only when its caller reads it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DownloadError, QianfanError
from ..models import ExportStatus
from .entries import Caller, Entry, Pending, status_age
from .outcomes import ExportOutcome, OutcomeKind
from .packing import StatusPacker

if TYPE_CHECKING:
    from ..models import DownloadRecord

__all__ = ["COMPACT_ABOVE", "StatusStore"]

COMPACT_ABOVE = 10_000
"""With more entries than this, each keeps its last status packed (``StatusPacker``),
unpacked again only if needed."""


class StatusStore:
    """Each entry's last status, and the outcomes made of what is known of an entry."""

    __slots__ = ("_packer",)

    def __init__(self) -> None:
        self._packer = StatusPacker()

    def last(self, entry: Entry) -> ExportStatus | None:
        """The last status seen for ``entry``."""
        seen = entry.seen
        if type(seen) is bytes:
            return self._packer.unpack(seen)
        return seen  # type: ignore[return-value]

    def remember(self, entry: Entry, status: ExportStatus, *, pack: bool) -> None:
        """Keep ``status`` as the last one seen, packed small if ``pack``."""
        previous = entry.state
        entry.state = status.state
        if not pack:
            entry.seen = status
            return
        seen = entry.seen
        if previous == status.state and type(seen) is bytes:
            # An export's status changes with its state; within one state only the log
            # id moves, so the packed rest stays (packing is what costs).
            entry.seen = self._packer.with_log_id(seen, status.log_id)
            return
        entry.seen = self._packer.pack(status)

    def outcome(
        self,
        entry: Entry,
        caller: Caller,
        kind: OutcomeKind,
        at: float,
        error: QianfanError | None = None,
    ) -> ExportOutcome:
        """``caller``'s outcome ``kind`` for ``entry``, made at ``at`` from what is known."""
        return ExportOutcome(
            entry.export_id,
            kind,
            self.last(entry),
            error,
            entry.polls,
            at - caller.started,
            status_age=status_age(entry, at),
        )

    def snapshot(self, entry: Entry, caller: Caller, now: float) -> ExportOutcome:
        """A ``pending`` outcome: what is known of ``entry`` now, for ``caller``."""
        trouble = entry.trouble
        error = None if trouble is None else trouble.last_error
        return self.outcome(entry, caller, OutcomeKind.PENDING, now, error)

    def materialize(self, pending: Pending, caller: Caller) -> ExportOutcome:
        """The outcome ``caller`` (lazy) was given as ``pending``."""
        entry = pending.entry
        file, download_error = pending.files or (None, None)
        outcome = ExportOutcome(
            entry.export_id,
            pending.kind,
            self.last(entry),
            pending.error,
            entry.polls,
            pending.at - caller.started,
            file,
            download_error,
            status_age(entry, pending.at),
        )
        if entry.callers is None:
            entry.seen = None  # dropped: nobody else will read it
        return outcome

    def final(
        self,
        entry: Entry,
        callers: list[Caller],
        kind: OutcomeKind,
        now: float,
        error: QianfanError | None,
        file: DownloadRecord | None,
        download_error: DownloadError | None,
    ) -> list[tuple[Caller, ExportOutcome]]:
        """The final outcome of ``entry`` for each of ``callers`` (one status, shared)."""
        status = self.last(entry)
        age = status_age(entry, now)
        made = [
            (
                caller,
                ExportOutcome(
                    entry.export_id,
                    kind,
                    status,
                    error,
                    entry.polls,
                    now - caller.started,
                    file,
                    download_error,
                    age,
                ),
            )
            for caller in callers
        ]
        entry.seen = None  # the outcomes hold it now; the entry may outlive them
        return made
