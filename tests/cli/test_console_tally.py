"""``console.tally``: counts by outcome, what the display shows, and the exit code."""

from __future__ import annotations

import pytest

from qianfan_export_wait.console.exits import ExitCode
from qianfan_export_wait.console.tally import Tally
from qianfan_export_wait.errors import AuthError, ServiceUnavailableError
from qianfan_export_wait.waiting.outcomes import ExportOutcome, OutcomeKind, WaiterStats

STATS = WaiterStats(
    total=1, pending=1, done=0, failed=0, errors=0, timed_out=0, in_flight=0,
    requests=10, throttled=3, retries=0, rate=50_000.0, request_rate=12.0,
)  # fmt: skip


def outcome(kind: OutcomeKind, error: Exception | None = None) -> ExportOutcome:
    return ExportOutcome(1, kind, None, error, 1, 0.1)  # type: ignore[arg-type]


def test_snapshot_shows_the_real_request_rate_not_the_limiters_allowance() -> None:
    snapshot = Tally(total=1).snapshot(STATS, 2.0)
    assert (snapshot.request_rate, snapshot.throttled, snapshot.requests) == (12.0, 3, 10)


def test_snapshot_counts_bytes_only_when_downloading() -> None:
    tally = Tally(total=1, bytes_received=5)
    assert tally.snapshot(STATS, 1.0).bytes_received is None
    assert tally.snapshot(STATS, 1.0, downloading=True).bytes_received == 5


@pytest.mark.parametrize(
    ("outcomes", "downloads_failed", "code"),
    [
        ([OutcomeKind.DONE], 0, ExitCode.OK),
        ([OutcomeKind.DONE], 1, ExitCode.FAILED),
        ([OutcomeKind.DONE, OutcomeKind.FAILED], 0, ExitCode.FAILED),
        ([OutcomeKind.ERROR], 0, ExitCode.FAILED),
        ([OutcomeKind.FAILED, OutcomeKind.TIMEOUT], 0, ExitCode.TIMEOUT),
    ],
)
def test_exit_code_is_the_most_serious_outcome(
    outcomes: list[OutcomeKind], downloads_failed: int, code: ExitCode
) -> None:
    tally = Tally(total=len(outcomes), downloads_failed=downloads_failed)
    for kind in outcomes:
        tally.count_outcome(outcome(kind))
    assert tally.exit_code() is code


def test_authentication_outranks_an_outage_which_outranks_a_timeout() -> None:
    tally = Tally(total=3)
    tally.count_outcome(outcome(OutcomeKind.TIMEOUT))
    tally.count_outcome(outcome(OutcomeKind.ERROR, ServiceUnavailableError(600.0, None)))
    assert tally.exit_code() is ExitCode.UNAVAILABLE
    tally.count_outcome(outcome(OutcomeKind.ERROR, AuthError("no")))
    assert tally.exit_code() is ExitCode.NOPERM


def test_a_run_stopped_early_exits_with_the_reason() -> None:
    tally = Tally(total=1, stopped=ExitCode.SIGTERM)
    tally.count_outcome(outcome(OutcomeKind.DONE))
    assert tally.exit_code() is ExitCode.SIGTERM
