"""What waiting produces: outcomes, state changes, the report and the stats. Pure data, and
the one mapping from an export's state to an outcome."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from .._text import counted
from ..errors import AuthError, DownloadError, QianfanError, ServiceUnavailableError
from ..models import ExportId, ExportState, ExportStatus

if TYPE_CHECKING:
    from ..models import DownloadRecord

__all__ = [
    "TERMINAL_KINDS",
    "ExportOutcome",
    "OutcomeKind",
    "StateChange",
    "UpdateHook",
    "WaitReport",
    "WaitReportError",
    "WaiterEvent",
    "WaiterStats",
    "kind_for_state",
]


class OutcomeKind(str, enum.Enum):
    """How waiting for one export ended (``pending``: it had not, when last looked at)."""

    DONE = "done"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    PENDING = "pending"

    def __str__(self) -> str:
        return self.value


TERMINAL_KINDS: Mapping[ExportState | str, OutcomeKind] = MappingProxyType(
    {ExportState.DONE: OutcomeKind.DONE, ExportState.FAIL: OutcomeKind.FAILED}
)
"""The one state-to-outcome rule: the states that end a wait, and the outcome of each."""


def kind_for_state(state: ExportState | str | None) -> OutcomeKind:
    """``done`` for ``Done``, ``failed`` for ``Fail``, ``pending`` for any other state."""
    if isinstance(state, ExportState):
        return TERMINAL_KINDS.get(state, OutcomeKind.PENDING)
    return OutcomeKind.PENDING


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """The end of waiting for one export, with the last status seen and what it cost.

    ``error`` is set for ``error`` outcomes, and for a ``timeout`` that came while the
    service gave no answer (a ``ServiceUnavailableError``). With a waiter's ``downloader``,
    a ``done`` outcome carries its ``file``, or the ``download_error`` that kept it from
    being fetched (the outcome stays ``done``). ``status_age`` says how old ``status``
    was when the outcome was made.
    """

    export_id: ExportId
    kind: OutcomeKind
    status: ExportStatus | None
    error: QianfanError | None
    polls: int
    elapsed: float
    file: DownloadRecord | None = None
    download_error: DownloadError | None = None
    status_age: float | None = None
    """Seconds from when ``status`` was received to when this outcome was made (``None``
    without a status): how stale a ``timeout``'s or a ``pending``'s last state is."""

    @property
    def ok(self) -> bool:
        """Whether the export is ``Done``."""
        return self.kind is OutcomeKind.DONE

    @property
    def unavailable(self) -> bool:
        """Whether it ended because the service stayed unavailable (no answer at all)."""
        return isinstance(self.error, ServiceUnavailableError)


@dataclass(frozen=True, slots=True)
class StateChange:
    """An export moved to a new non-terminal state (reported through ``on_update``)."""

    export_id: ExportId
    previous: str | None
    state: str
    status: ExportStatus
    polls: int
    elapsed: float


WaiterEvent = StateChange | ExportOutcome
"""What ``on_update`` receives: every state change, then each export's final outcome."""

UpdateHook = Callable[[WaiterEvent], object]
"""The type of ``ExportWaiter(on_update=...)``."""


@dataclass(frozen=True, slots=True)
class WaiterStats:
    """A snapshot for progress bars and metrics.

    ``total``, the outcome counts, ``requests``, ``throttled`` and ``retries`` count over
    the waiter's life, one per export waited on (callers sharing an export share it);
    ``pending``, ``in_flight``, ``callers``, ``downloading`` and ``unavailable_for``
    describe now.
    ``rate`` is the limiter's allowance; ``request_rate`` the requests actually sent per
    second lately.
    """

    total: int
    pending: int
    done: int
    failed: int
    errors: int
    timed_out: int
    in_flight: int
    requests: int
    throttled: int
    retries: int
    rate: float
    cancelled: int = 0
    callers: int = 0
    request_rate: float = 0.0
    max_in_flight: int = 0
    unavailable_for: float | None = None
    downloading: int = 0

    @property
    def finished(self) -> int:
        """Exports with a final outcome."""
        return self.done + self.failed + self.errors + self.timed_out


class WaitReportError(QianfanError):
    """Raised by ``WaitReport.raise_for_failures`` when some export did not end ``Done``."""

    def __init__(self, message: str, report: WaitReport) -> None:
        super().__init__(message)
        self.report = report


class WaitReport(Mapping[ExportId, ExportOutcome]):
    """Each requested export id mapped to its outcome, in the caller's order."""

    def __init__(self, outcomes: Iterable[ExportOutcome], *, elapsed: float = 0.0) -> None:
        self._outcomes: dict[tuple[type, ExportId], ExportOutcome] = {
            (type(outcome.export_id), outcome.export_id): outcome for outcome in outcomes
        }
        self.elapsed = elapsed

    def __getitem__(self, export_id: ExportId) -> ExportOutcome:
        return self._outcomes[(type(export_id), export_id)]

    def __iter__(self) -> Iterator[ExportId]:
        return (outcome.export_id for outcome in self._outcomes.values())

    def __len__(self) -> int:
        return len(self._outcomes)

    def __contains__(self, export_id: object) -> bool:
        return (type(export_id), export_id) in self._outcomes

    def __repr__(self) -> str:
        return (
            f"WaitReport(done={len(self.done)}, failed={len(self.failed)}, "
            f"errors={len(self.errors)}, timed_out={len(self.timed_out)})"
        )

    def _of(self, kind: OutcomeKind) -> list[ExportOutcome]:
        return [outcome for outcome in self._outcomes.values() if outcome.kind is kind]

    @property
    def outcomes(self) -> list[ExportOutcome]:
        """Every outcome, in the caller's order."""
        return list(self._outcomes.values())

    @property
    def done(self) -> list[ExportOutcome]:
        """Outcomes of exports that reached ``Done``."""
        return self._of(OutcomeKind.DONE)

    @property
    def failed(self) -> list[ExportOutcome]:
        """Outcomes of exports that reached ``Fail``."""
        return self._of(OutcomeKind.FAILED)

    @property
    def errors(self) -> list[ExportOutcome]:
        """Outcomes of exports that ended on an error (unknown id, auth, outage, ...)."""
        return self._of(OutcomeKind.ERROR)

    @property
    def timed_out(self) -> list[ExportOutcome]:
        """Outcomes of exports still running at the deadline."""
        return self._of(OutcomeKind.TIMEOUT)

    @property
    def unavailable(self) -> list[ExportOutcome]:
        """Outcomes that ended because the service stayed unavailable (error or timeout)."""
        return [outcome for outcome in self._outcomes.values() if outcome.unavailable]

    @property
    def ok(self) -> bool:
        """Whether every export reached ``Done``."""
        return all(outcome.kind is OutcomeKind.DONE for outcome in self._outcomes.values())

    @property
    def auth_error(self) -> AuthError | None:
        """The authentication failure that stopped the wait, if any."""
        for outcome in self._outcomes.values():
            if isinstance(outcome.error, AuthError):
                return outcome.error
        return None

    def raise_for_failures(self) -> None:
        """Raise ``WaitReportError`` unless every export reached ``Done``."""
        if not self.ok:
            raise WaitReportError(
                f"{len(self) - len(self.done)} of {counted(len(self), 'export')} did not "
                f"finish Done: {len(self.failed)} failed, {counted(len(self.errors), 'error')}, "
                f"{len(self.timed_out)} timed out",
                self,
            )
