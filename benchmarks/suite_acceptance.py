"""``acceptance``: the waiter issue's figure. 2,000 exports finishing over 8 s with
``PollPolicy(min_delay=0.1, max_delay=1.0)``: every outcome right and p99 detection lag
under 1.5 s; then the same with 20% injected faults (spread over the five kinds): nothing
lost. And the hardening issue's fault soak: 5,000 exports under 30% faults end in their
true states and take at most 1.5 times the fault-free run of the same seeded schedule
(both bound by when the exports finish, so the ratio is what faults cost the waiter)."""

from __future__ import annotations

from qianfan_export_wait.waiter import PollPolicy

from .common import SuiteResult, Target, summarize_lags
from .simserver import SimProcess
from .tracking import score, wait_and_record

LAG_TARGET_S = 1.5
SOAK_EXPORTS = 5000
SOAK_RATIO_TARGET = 1.5


async def run(quick: bool) -> SuiteResult:
    """Run the suite (the same size with and without ``--quick``: it is the figure)."""
    result = SuiteResult("acceptance")
    policy = PollPolicy(min_delay=0.1, max_delay=1.0, timeout=120.0)
    async with SimProcess() as sim:
        for label, faults in (("clean", 0.0), ("faults-20pct", 0.2)):
            await sim.configure(faults=faults)
            ids = await sim.add(2000, max_seconds=8.0, fail_ratio=0.1, seed=3)
            seen, outcomes, figures = await wait_and_record(sim.base_url, ids, policy)
            scored = await score(sim, seen, outcomes, ids)
            result.metrics[label] = {
                "wall_s": round(figures["wall_s"], 2),
                "requests": figures["requests"],
                "transient_errors": figures["transient_errors"],
                "wrong_or_missing": scored.wrong + scored.missing,
                **summarize_lags(scored.lags),
            }
            result.targets.append(
                Target(f"{label}: wrong or missing outcomes", scored.wrong + scored.missing, 0, "")
            )
            if faults == 0.0:
                result.targets.append(
                    Target(
                        f"{label}: p99 detection lag",
                        result.metrics[label]["lag_p99_s"],
                        LAG_TARGET_S,
                        "s",
                    )
                )
    await _fault_soak(result)
    return result


async def _fault_soak(result: SuiteResult) -> None:
    """5,000 exports over 8 s, fault-free then with 30% faults: the wall-time ratio."""
    policy = PollPolicy(min_delay=0.5, max_delay=2.0, timeout=60.0)
    walls: dict[float, float] = {}
    async with SimProcess(slow_delay=0.2) as sim:
        for faults in (0.0, 0.3):
            label = f"soak-{SOAK_EXPORTS}-faults-{round(faults * 100)}pct"
            await sim.configure(faults=faults)
            ids = await sim.add(SOAK_EXPORTS, max_seconds=8.0, fail_ratio=0.1, seed=11)
            seen, outcomes, figures = await wait_and_record(
                sim.base_url,
                ids,
                policy,
                client_options={"request_timeout": 2.0, "connection_limit": 64},
                max_in_flight=64,
            )
            scored = await score(sim, seen, outcomes, ids)
            walls[faults] = figures["wall_s"]
            result.metrics[label] = {
                "wall_s": round(figures["wall_s"], 2),
                "requests": figures["requests"],
                "transient_errors": figures["transient_errors"],
                "wrong_or_missing": scored.wrong + scored.missing,
            }
            result.targets.append(
                Target(f"{label}: wrong or missing outcomes", scored.wrong + scored.missing, 0, "")
            )
    result.targets.append(
        Target(
            f"soak-{SOAK_EXPORTS}: wall with 30% faults / fault-free",
            round(walls[0.3] / walls[0.0], 3),
            SOAK_RATIO_TARGET,
            "x",
        )
    )
