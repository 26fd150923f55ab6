"""No blind waits: what to do about an export state outside the known ones. Pure code:
time is passed in."""

from __future__ import annotations

import logging

from ._checks import check_number
from .errors import UnknownStateError
from .models import ExportId, ExportStatus

__all__ = ["UnknownStates"]

logger = logging.getLogger("qianfan_export_wait")


class UnknownStates:
    """Counts answers in unknown states, logs each distinct state once (naming the first
    export that reported it), and with ``give_up_after`` says when an export has stayed
    in such states that many seconds."""

    __slots__ = ("counts", "give_up_after", "since")

    def __init__(self, *, give_up_after: float | None = None) -> None:
        check_number("unknown_state_timeout", give_up_after, allow_none=True, inclusive=True)
        self.give_up_after = None if give_up_after is None else float(give_up_after)
        self.counts: dict[str, int] = {}
        self.since: dict[ExportId, float] = {}
        """When each export timed now first answered an unknown state (empty: none is)."""

    @property
    def tracking(self) -> bool:
        """Whether some export is being timed in an unknown state."""
        return bool(self.since)

    def known(self, export_id: ExportId) -> None:
        """``export_id`` answered a known state: its time in unknown states starts over."""
        self.since.pop(export_id, None)

    def seen(
        self, export_id: ExportId, status: ExportStatus, now: float
    ) -> UnknownStateError | None:
        """Note an answer in an unknown state at ``now`` (seconds); the error to end the
        export with once it has been in unknown states ``give_up_after`` seconds."""
        state = status.state_name
        if state not in self.counts:
            logger.warning(
                "export %r is in state %r, which this client does not know (%s API); "
                "treating it as running%s",
                export_id,
                state,
                status.api,
                "" if self.give_up_after is None else f" for at most {self.give_up_after:g} s",
            )
            self.counts[state] = 0
        self.counts[state] += 1
        if self.give_up_after is None:
            return None
        since = self.since.setdefault(export_id, now)
        if now - since < self.give_up_after:
            return None
        del self.since[export_id]
        return UnknownStateError(
            f"export {export_id!r} stayed in unknown state(s) for {now - since:g} s "
            f"(last: {state!r}), more than unknown_state_timeout={self.give_up_after:g} s",
            state=state,
            export_id=export_id,
        )
