"""``soak``: one ``ExportWaiter`` for a long time under continuous caller churn.

The simulator (a child process) gets new exports every second, each finishing (or
failing) within ``_FINISH_WITHIN`` seconds; ``_CALLERS`` caller loops share one waiter and
each, over and over, picks a random recent (sometimes an old) set of ids and one way to
wait and to leave:

* ``wait`` with a timeout from very short to long; ``submit`` then ``cancel`` soon after;
* ``wait_all`` inside ``asyncio.timeout`` (cancelled when it is short);
* ``as_completed`` read to its end, left by ``break`` after a few outcomes (with and
  without ``async with``), or ``release()``-d in the middle.

Every ``interval`` seconds (30; 1 in the smoke run) it samples this process's RSS, open
files (``/proc/self/fd``), asyncio tasks, and the waiter's in-flight, pending and caller
counts, with the requests and outcomes since the last sample. After the warm-up it fits
a least-squares line to each metric and reports its slope per hour; "flat" means the
fitted growth over an hour stays within ``_FLAT_SHARE`` of the metric's mean (or its
noise floor, whichever is larger); a fitted fall is no leak and counts as flat. At the
end every caller stops; then nothing must be left in flight, and a fresh ``wait`` for an
export that is Done must answer.

Only ``--only soak`` runs it in full (``--soak-minutes``, default 30; results also go to
``soak.json``); ``--quick`` runs a few-second smoke of the same code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from qianfan_export_wait import ExportWaiter, PollPolicy, QianfanError

from .common import SuiteResult, Target, make_client
from .simserver import SimProcess

DEFAULT_MINUTES = 30.0
_CALLERS = 24
_NEW_PER_SECOND = 4
_FINISH_WITHIN = 30.0
_RECENT = 400
_MAX_IN_FLIGHT = 16
_QPS = 40.0
_FAULTS = 0.03
_FLAT_SHARE = 0.05
_NOISE_FLOOR = {"rss_mb": 2.0, "open_fds": 1.0, "tasks": 2.0, "in_flight": 1.0}
TRACKED = ("rss_mb", "open_fds", "tasks", "in_flight", "pending", "callers")
_FLAT_CHECKED = ("rss_mb", "open_fds", "tasks", "in_flight")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """This process's resident set now, in MB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, in value per hour; NaN for
    fewer than two distinct times."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 3600.0


class _Churn:
    """The caller loops and the export producer, sharing one waiter."""

    def __init__(self, sim: SimProcess, waiter: ExportWaiter, seed: int) -> None:
        self.sim = sim
        self.waiter = waiter
        self.rng = random.Random(seed)
        self.recent: deque[int] = deque(maxlen=_RECENT)
        self.history: list[int] = []
        self.actions: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.started = asyncio.Event()

    async def produce(self) -> None:
        seed = 1000
        while True:
            seed += 1
            ids = await self.sim.add(
                _NEW_PER_SECOND, max_seconds=_FINISH_WITHIN, fail_ratio=0.1, seed=seed
            )
            self.recent.extend(ids)
            self.history.extend(ids)
            self.started.set()
            await asyncio.sleep(1.0)

    def _pick(self, most: int) -> list[int]:
        count = self.rng.randint(1, most)
        if self.history and self.rng.random() < 0.1:
            return self.rng.sample(self.history, min(count, len(self.history)))
        pool = list(self.recent)
        return self.rng.sample(pool, min(count, len(pool)))

    async def caller(self) -> None:
        rng = self.rng
        await self.started.wait()
        while True:
            action = rng.choice(
                ("wait", "wait_short", "submit_cancel", "wait_all", "stream_full",
                 "stream_break", "stream_with_break", "stream_release")
            )  # fmt: skip
            self.actions[action] += 1
            try:
                await getattr(self, "_" + action)()
            except (QianfanError, TimeoutError) as exc:
                self.outcomes[type(exc).__name__] += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # shown in the notes: the soak goes on
                self.unexpected[f"{action}: {type(exc).__name__}: {exc}"] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.2))

    def _note(self, outcome: Any) -> None:
        self.outcomes[str(outcome.kind.value)] += 1

    async def _wait(self) -> None:
        await self.waiter.wait(self._pick(1)[0], timeout=self.rng.uniform(1.0, 40.0))
        self.outcomes["done"] += 1

    async def _wait_short(self) -> None:
        await self.waiter.wait(self._pick(1)[0], timeout=self.rng.uniform(0.01, 0.5))
        self.outcomes["done"] += 1

    async def _submit_cancel(self) -> None:
        handle = self.waiter.submit(self._pick(1)[0])
        try:
            await asyncio.sleep(self.rng.choice((0.0, self.rng.uniform(0.0, 2.0))))
        finally:
            if not handle.cancel():
                self._note(handle.outcome())

    async def _wait_all(self) -> None:
        async with asyncio.timeout(self.rng.choice((0.3, 3.0, 60.0))):
            report = await self.waiter.wait_all(self._pick(12))
        for outcome in report.values():
            self._note(outcome)

    async def _stream_full(self) -> None:
        async for outcome in self.waiter.as_completed(self._pick(12)):
            self._note(outcome)

    async def _stream_break(self) -> None:
        ids = self._pick(12)
        keep = self.rng.randint(1, len(ids))
        async for outcome in self.waiter.as_completed(ids):
            self._note(outcome)
            keep -= 1
            if keep <= 0:
                break

    async def _stream_with_break(self) -> None:
        ids = self._pick(12)
        keep = self.rng.randint(1, len(ids))
        async with self.waiter.as_completed(ids) as stream:
            async for outcome in stream:
                self._note(outcome)
                keep -= 1
                if keep <= 0:
                    break

    async def _stream_release(self) -> None:
        stream = self.waiter.as_completed(self._pick(12))
        keep = self.rng.randint(1, 3)
        async for outcome in stream:
            self._note(outcome)
            keep -= 1
            if keep <= 0:
                stream.release()


def _sample(waiter: ExportWaiter, started: float, previous: dict[str, Any]) -> dict[str, Any]:
    stats = waiter.stats
    now = time.monotonic()
    cpu = time.process_time()
    sample = {
        "t_s": round(now - started, 1),
        "rss_mb": round(rss_mb(), 2),
        "open_fds": open_fds(),
        "tasks": len(asyncio.all_tasks()),
        "in_flight": stats.in_flight,
        "pending": stats.pending,
        "callers": stats.callers,
        "requests": stats.requests,
        "timed_out": stats.timed_out,
        "finished": stats.done + stats.failed,
        "cpu_s": round(cpu, 2),
    }
    if previous:
        span = max(now - started - previous["t_s"], 1e-9)
        sample["requests_per_s"] = round((stats.requests - previous["requests"]) / span, 1)
        sample["cpu_share"] = round((cpu - previous["cpu_s"]) / span, 3)
    return sample


def _flatness(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, dict[str, Any]]:
    after = [sample for sample in samples if sample["t_s"] >= warmup_s]
    fits: dict[str, dict[str, Any]] = {}
    for metric in TRACKED:
        points = [(sample["t_s"], float(sample[metric])) for sample in after]
        slope = slope_per_hour(points)
        mean = sum(v for _, v in points) / len(points) if points else math.nan
        allowed = max(_FLAT_SHARE * mean, _NOISE_FLOOR.get(metric, 1.0))
        fits[metric] = {
            "slope_per_hour": round(slope, 3),
            "mean": round(mean, 2),
            "first": points[0][1] if points else math.nan,
            "last": points[-1][1] if points else math.nan,
            "flat_if_slope_within": round(allowed, 2),
            # A leak grows: a fitted fall (noise around a level) is not one.
            "flat": bool(slope <= allowed) if not math.isnan(slope) else False,
        }
    return fits


def _write(path: Path, document: dict[str, Any]) -> None:
    def safe(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: safe(inner) for key, inner in value.items()}
        if isinstance(value, list):
            return [safe(inner) for inner in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(safe(document), indent=1) + "\n", encoding="utf-8")
    print(f"   wrote {path}", file=sys.stderr, flush=True)


async def soak(
    seconds: float, interval: float, warmup_s: float, *, seed: int = 16
) -> dict[str, Any]:
    """Run the churn for ``seconds``; return the samples, the fits and the end checks."""
    samples: list[dict[str, Any]] = []
    async with SimProcess(faults=_FAULTS, slow_delay=1.0, seed=seed) as sim:
        policy = PollPolicy(min_delay=0.2, max_delay=2.0, timeout=60.0)
        async with (
            make_client(sim.base_url) as client,
            ExportWaiter(client, policy=policy, qps=_QPS, max_in_flight=_MAX_IN_FLIGHT) as waiter,
        ):
            churn = _Churn(sim, waiter, seed)
            started = time.monotonic()
            tasks = [asyncio.create_task(churn.produce())]
            tasks += [asyncio.create_task(churn.caller()) for _ in range(_CALLERS)]
            try:
                samples.append(_sample(waiter, started, {}))
                while time.monotonic() - started < seconds:
                    await asyncio.sleep(
                        min(interval, max(0.0, started + seconds - time.monotonic()))
                    )
                    samples.append(_sample(waiter, started, samples[-1]))
                    last = samples[-1]
                    print(
                        f"   soak {last['t_s']:>7.0f} s: rss {last['rss_mb']:.1f} MB, "
                        f"fds {last['open_fds']}, tasks {last['tasks']}, "
                        f"in flight {last['in_flight']}, pending {last['pending']}, "
                        f"{last.get('requests_per_s', 0)} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # A cancelled task keeps its traceback, and so the frames of an
                # ``async for`` it was in: drop them, or those streams stay joined.
                tasks.clear()
            # Every caller has left (a stream dropped in a cycle leaves when collected):
            # nothing may stay in flight, and a fresh wait for an export that is Done
            # must still be answered.
            gc.collect()
            settle_by = time.monotonic() + 10.0
            while time.monotonic() < settle_by:
                left = waiter.stats
                if not (left.in_flight or left.callers or left.pending):
                    break
                await asyncio.sleep(0.1)
            fresh = (await sim.add(1, held=True))[0]
            await sim.complete([fresh])
            fresh_started = time.monotonic()
            try:
                await waiter.wait(fresh, timeout=15.0)
                fresh_answer = "done"
            except QianfanError as exc:
                fresh_answer = type(exc).__name__
            fresh_s = time.monotonic() - fresh_started
    return {
        "samples": samples,
        "fits": _flatness(samples, warmup_s),
        "after_callers_left": {
            "in_flight": left.in_flight,
            "pending": left.pending,
            "callers": left.callers,
            "fresh_wait_of_done_export": fresh_answer,
            "fresh_wait_s": round(fresh_s, 2),
        },
        "actions": dict(churn.actions),
        "outcomes": dict(churn.outcomes),
        "unexpected": dict(churn.unexpected),
        "exports_added": len(churn.history),
    }


async def run(quick: bool, minutes: float | None = None, output: Path | None = None) -> SuiteResult:
    """The soak: a few seconds' smoke with ``quick``, else ``minutes`` (default 30)."""
    result = SuiteResult("soak")
    if quick:
        seconds, interval, warmup = 6.0, 1.0, 2.0
    else:
        seconds = 60.0 * (minutes if minutes is not None else DEFAULT_MINUTES)
        interval, warmup = 30.0, min(300.0, seconds / 6)
    report = await soak(seconds, interval, warmup)
    fits = report["fits"]
    left = report["after_callers_left"]
    result.metrics = {
        "minutes": round(seconds / 60, 2),
        "warmup_s": warmup,
        "samples": len(report["samples"]),
        "exports_added": report["exports_added"],
        "callers": _CALLERS,
        "max_in_flight": _MAX_IN_FLIGHT,
        "slope_per_hour": {metric: fits[metric]["slope_per_hour"] for metric in TRACKED},
        "after_callers_left": left,
        "outcomes": report["outcomes"],
    }
    result.series["soak"] = report["samples"]
    if not quick:
        for metric in _FLAT_CHECKED:
            fit = fits[metric]
            result.targets.append(
                Target(
                    f"{metric} growth after warm-up (per hour)",
                    max(fit["slope_per_hour"], 0.0),
                    fit["flat_if_slope_within"],
                    "/h",
                )
            )
    result.targets.append(
        Target("requests in flight once every caller left", left["in_flight"], 0, "")
    )
    result.targets.append(
        Target("callers still registered once every caller left", left["callers"], 0, "")
    )
    result.targets.append(
        Target(
            "fresh wait() for a Done export answered",
            1.0 if left["fresh_wait_of_done_export"] == "done" else 0.0,
            1.0,
            "",
            op=">=",
        )
    )
    for problem, count in report["unexpected"].items():
        result.notes.append(f"{count} x {problem}")
    if output is not None and not quick:
        document = {
            "schema": 1,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": seconds,
            "interval_s": interval,
            "warmup_s": warmup,
            "setup": {
                "callers": _CALLERS,
                "new_exports_per_s": _NEW_PER_SECOND,
                "finish_within_s": _FINISH_WITHIN,
                "max_in_flight": _MAX_IN_FLIGHT,
                "qps": _QPS,
                "faults": _FAULTS,
            },
            **report,
        }
        _write(output / "soak.json", document)
    return result
