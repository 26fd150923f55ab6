"""Run a waiter over exports on the simulator and score what it saw against the truth."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from qianfan_export_wait.waiter import ExportOutcome, ExportWaiter, OutcomeKind, PollPolicy

from .common import make_client
from .simserver import SimProcess

__all__ = ["Scored", "score", "wait_and_record"]

_EXPECTED_KIND = {"Done": OutcomeKind.DONE, "Fail": OutcomeKind.FAILED}


@dataclass(slots=True)
class Scored:
    """Detection lags and correctness of one waiting run."""

    lags: list[float] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    wrong: int = 0
    missing: int = 0
    last_finish: float = 0.0


async def wait_and_record(
    base_url: str,
    ids: list[int],
    policy: PollPolicy,
    client_options: dict[str, Any] | None = None,
    **waiter_options: Any,
) -> tuple[dict[int, float], dict[int, ExportOutcome], dict[str, Any]]:
    """``wait_all`` with a fresh client (made with ``client_options``); return when each
    outcome was seen (monotonic), the outcomes, and run figures (wall, CPU, requests)."""
    seen: dict[int, float] = {}

    def on_update(event: object) -> None:
        if isinstance(event, ExportOutcome):
            seen[event.export_id] = time.monotonic()  # type: ignore[index]

    async with make_client(base_url, **(client_options or {})) as client:
        waiter = ExportWaiter(client, policy=policy, on_update=on_update, **waiter_options)
        cpu_started = time.process_time()
        wall_started = time.monotonic()
        report = await waiter.wait_all(ids)
        figures = {
            "started": wall_started,
            "wall_s": time.monotonic() - wall_started,
            "cpu_s": time.process_time() - cpu_started,
            "requests": client.stats.requests,
            "throttled": client.stats.throttled,
            "transient_errors": client.stats.transient_errors,
        }
    outcomes = {outcome.export_id: outcome for outcome in report.outcomes}
    return seen, outcomes, figures  # type: ignore[return-value]


async def score(
    sim: SimProcess,
    seen: dict[int, float],
    outcomes: dict[int, ExportOutcome] | None,
    ids: list[int],
) -> Scored:
    """Compare what was seen with the simulator's finish times and final states."""
    truth = await sim.finish_times(ids)
    scored = Scored()
    for export_id in ids:
        finish_at, final_state = truth[export_id]
        if finish_at is not None:
            scored.last_finish = max(scored.last_finish, finish_at)
        outcome = outcomes.get(export_id) if outcomes is not None else None
        if outcomes is not None:
            if outcome is None:
                scored.missing += 1
                continue
            if outcome.kind is not _EXPECTED_KIND.get(final_state):
                scored.wrong += 1
            scored.polls.append(outcome.polls)
        if export_id in seen and finish_at is not None:
            scored.lags.append(seen[export_id] - finish_at)
        else:
            scored.missing += 1
    return scored
