"""What a run has produced so far: outcomes by kind, files, bytes, and the exit code they
add up to. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AuthError
from ..waiting.outcomes import ExportOutcome, OutcomeKind, WaiterStats
from .exits import ExitCode
from .progress import ProgressSnapshot

__all__ = ["Tally"]


@dataclass(slots=True)
class Tally:
    """Counts for the progress display, the summary and the exit code."""

    total: int
    done: int = 0
    failed: int = 0
    errors: int = 0
    timed_out: int = 0
    pending: int = 0
    resumed: int = 0
    auth_failed: bool = False
    unavailable: bool = False
    files: int = 0
    bytes_received: int = 0
    downloads_failed: int = 0
    stopped: ExitCode | None = None
    """Set when the run was cut short: by a signal, or a stdout that could not be written."""

    @property
    def finished(self) -> int:
        """Exports with a final outcome (``pending`` ones are not)."""
        return self.done + self.failed + self.errors + self.timed_out

    def count(self, kind: OutcomeKind) -> None:
        """One more outcome of ``kind``."""
        if kind is OutcomeKind.DONE:
            self.done += 1
        elif kind is OutcomeKind.FAILED:
            self.failed += 1
        elif kind is OutcomeKind.ERROR:
            self.errors += 1
        elif kind is OutcomeKind.TIMEOUT:
            self.timed_out += 1
        else:
            self.pending += 1

    def count_outcome(self, outcome: ExportOutcome) -> None:
        """One more waiter outcome, noting an authentication failure or an outage."""
        self.count(outcome.kind)
        self.auth_failed = self.auth_failed or isinstance(outcome.error, AuthError)
        self.unavailable = self.unavailable or outcome.unavailable

    def exit_code(self) -> ExitCode:
        """Why the run was stopped, if it was; else the most serious thing that happened:
        authentication (77), the service gone (69), a timeout (2), a Fail, an error or a
        failed download (1), else 0."""
        if self.stopped is not None:
            return self.stopped
        if self.auth_failed:
            return ExitCode.NOPERM
        if self.unavailable:
            return ExitCode.UNAVAILABLE
        if self.timed_out:
            return ExitCode.TIMEOUT
        if self.failed or self.errors or self.downloads_failed:
            return ExitCode.FAILED
        return ExitCode.OK

    def snapshot(
        self, stats: WaiterStats, elapsed: float, *, downloading: bool = False
    ) -> ProgressSnapshot:
        """What the display shows now: these counts, with the waiter's real request rate
        (not its limiter's allowance) and throttles."""
        return ProgressSnapshot(
            total=self.total,
            finished=self.finished,
            failed=self.failed,
            errors=self.errors,
            timed_out=self.timed_out,
            elapsed=elapsed,
            request_rate=stats.request_rate,
            requests=stats.requests,
            throttled=stats.throttled,
            done=self.done,
            pending=self.pending,
            resumed=self.resumed,
            bytes_received=self.bytes_received if downloading else None,
            files=self.files,
            downloads_failed=self.downloads_failed,
        )
