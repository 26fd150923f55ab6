"""``service``: one waiter shared by many callers, as a service uses it.

* **Sharing.** The same exports on the same timeline, waited for once by a single
  ``wait_all`` and once by 200 callers arriving over the first seconds, each on a random
  subset (every id wanted by several callers, some several times): requests per export,
  shared over single.
* **Concurrency.** 200 callers of ``wait()`` on held exports with 0.5 s answers: the peak
  of requests in flight at the server against ``max_in_flight``.
* **Outage.** Every request is answered with a connection reset for 60 s (10 s quick),
  then the service is back and every export is Done: requests sent during the outage,
  and the time from the service's return to each export's next answer.
"""

from __future__ import annotations

import asyncio
import random
import time

from qianfan_export_wait import (
    ExportOutcome,
    ExportWaiter,
    OutcomeKind,
    OutcomeStream,
    PollPolicy,
)
from qianfan_export_wait.simulator import FaultRates

from .common import SuiteResult, Target, make_client, percentile
from .simserver import SimProcess

SHARING_TARGET = 1.1


async def _requests_of(sim: SimProcess) -> int:
    stats = await sim.stats()
    return int(stats["total_requests"])


async def _single(sim: SimProcess, ids: list[int], policy: PollPolicy) -> int:
    await sim.reset()
    async with make_client(sim.base_url) as client, ExportWaiter(client, policy=policy) as waiter:
        report = await waiter.wait_all(ids)
    assert len(report) == len(ids)
    return await _requests_of(sim)


async def _shared(
    sim: SimProcess, ids: list[int], policy: PollPolicy, callers: int, arrival_s: float
) -> tuple[int, int]:
    """Return requests at the server and how many caller waits ended wrong."""
    await sim.reset()
    rng = random.Random(11)
    wanted = [rng.sample(ids, max(1, len(ids) * 3 // callers)) for _ in range(callers)]
    covered = {export_id for subset in wanted for export_id in subset}
    wanted[0].extend(sorted(set(ids) - covered))  # every id is waited for by someone
    wrong = 0
    async with make_client(sim.base_url) as client, ExportWaiter(client, policy=policy) as waiter:

        async def caller(number: int, subset: list[int]) -> None:
            nonlocal wrong
            await asyncio.sleep(arrival_s * number / callers)
            if number % 3 == 0:
                report = await waiter.wait_all(subset + subset[:2])  # with duplicates
                outcomes = list(report.values())
            elif number % 3 == 1:
                outcomes = [outcome async for outcome in waiter.as_completed(subset)]
            else:
                outcomes = [await waiter.submit(export_id) for export_id in subset]
            wrong += sum(
                1 for o in outcomes if o.kind not in (OutcomeKind.DONE, OutcomeKind.FAILED)
            )

        await asyncio.gather(*(caller(n, subset) for n, subset in enumerate(wanted)))
    return await _requests_of(sim), wrong


async def _sharing(result: SuiteResult, quick: bool) -> None:
    count, spread, callers = (200, 8.0, 100) if quick else (500, 20.0, 200)
    policy = PollPolicy(min_delay=0.2, max_delay=2.0, timeout=None)
    rounds = 1 if quick else 3
    ratios = []
    async with SimProcess() as sim:
        for round_ in range(rounds):
            ids = await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=20 + round_)
            single = await _single(sim, ids, policy)
            ids = await sim.add(count, max_seconds=spread, fail_ratio=0.1, seed=20 + round_)
            shared, wrong = await _shared(sim, ids, policy, callers, arrival_s=2.0)
            ratios.append(shared / single)
            result.series.setdefault("sharing", []).append(
                {"single": single, "shared": shared, "wrong": wrong}
            )
    median = sorted(ratios)[len(ratios) // 2]
    result.metrics["sharing"] = {
        "exports": count,
        "callers": callers,
        "requests_per_export_single": round(result.series["sharing"][-1]["single"] / count, 2),
        "requests_per_export_shared": round(result.series["sharing"][-1]["shared"] / count, 2),
        "shared_over_single": [round(ratio, 3) for ratio in ratios],
    }
    result.targets.append(
        Target(
            f"{callers} callers sharing one waiter: requests / one wait_all's (median of {rounds})",
            round(median, 3),
            SHARING_TARGET,
            "x",
        )
    )


async def _concurrency(result: SuiteResult, quick: bool) -> None:
    callers, max_in_flight = (100, 16) if quick else (200, 32)
    async with SimProcess(slow_delay=0.5) as sim:
        ids = await sim.add(callers, held=True)
        await sim.configure(faults={"slow": 1.0})
        async with (
            make_client(sim.base_url) as client,
            ExportWaiter(
                client, policy=PollPolicy(min_delay=0.1, max_delay=0.5), max_in_flight=max_in_flight
            ) as waiter,
        ):
            tasks = [asyncio.ensure_future(waiter.wait(export_id)) for export_id in ids]
            await asyncio.sleep(4.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        stats = await sim.stats()
    peak = int(stats["peak_in_flight"])
    result.metrics["concurrency"] = {
        "callers": callers,
        "max_in_flight": max_in_flight,
        "peak_in_flight_at_server": peak,
    }
    result.targets.append(
        Target(
            f"peak requests in flight at the server / max_in_flight ({callers} callers)",
            round(peak / max_in_flight, 3),
            1.0,
            "x",
        )
    )


async def _outage(result: SuiteResult, quick: bool) -> None:
    count, outage_s = (500, 10.0) if quick else (2000, 60.0)
    policy = PollPolicy(min_delay=1.0, max_delay=10.0, timeout=None)
    async with SimProcess() as sim:
        ids = await sim.add(count, held=True)
        async with (
            make_client(sim.base_url, request_timeout=2.0) as client,
            ExportWaiter(client, policy=policy) as waiter,
        ):
            stream = waiter.as_completed(ids)
            drain = asyncio.ensure_future(_collect(stream))
            await asyncio.sleep(3.0)
            await sim.reset()
            await sim.configure(faults=FaultRates(reset=1.0).as_dict())
            await asyncio.sleep(outage_s)
            during = await _requests_of(sim)
            unavailable_for = waiter.stats.unavailable_for
            await sim.complete(ids)
            await sim.reset()
            back_at = time.monotonic()
            await sim.configure(faults=FaultRates().as_dict())
            outcomes = await asyncio.wait_for(drain, 120)
            answered = await sim.first_answers(ids)
    lags = [when - back_at for when in answered.values() if when is not None]
    done = sum(1 for outcome in outcomes if outcome.kind is OutcomeKind.DONE)
    result.metrics["outage"] = {
        "exports": count,
        "outage_s": outage_s,
        "requests_during_outage": during,
        "waiter_saw_unavailable_for_s": None
        if unavailable_for is None
        else round(unavailable_for, 1),
        "recovery_p50_s": round(percentile(lags, 0.5), 3),
        "recovery_p99_s": round(percentile(lags, 0.99), 3),
        "recovery_max_s": round(max(lags, default=float("nan")), 3),
        "done_after_recovery": done,
    }
    result.targets.append(
        Target(
            f"requests sent during a {outage_s:g} s outage ({count} pending exports)",
            during,
            float("inf"),
            "",
        )
    )
    result.targets.append(
        Target(
            "p99 from the service's return to each export's next answer",
            round(percentile(lags, 0.99), 3),
            float("inf"),
            "s",
        )
    )
    result.targets.append(Target("exports Done after the outage", done, count, "", op=">="))


async def _collect(stream: OutcomeStream) -> list[ExportOutcome]:
    return [outcome async for outcome in stream]


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("service")
    await _sharing(result, quick)
    await _concurrency(result, quick)
    await _outage(result, quick)
    return result
