"""``scale``: 10,000, 100,000 and 1,000,000 pending exports.

* Peak RSS of the whole waiting process: the real CLI (``qianfan-export-wait wait
  --ids-file``) in a subprocess, its peak RSS from ``os.wait4``. 10k and 100k held exports
  run to ``--timeout`` (60 s; 8 s with ``--quick``): every export is polled, holds its last
  status, then all time out together and are printed. The 1M runs (int ids, and every
  other id in its string form) get SIGTERM after 12 s, and report the time from start to
  the first request the simulator saw; ``--quick`` skips them. A one-id run is the
  baseline.
* CPU per poll outside the HTTP call: an ``ExportWaiter`` in this process driving an
  in-process client whose ``fetch_once`` returns a prebuilt status at once. "Saturated":
  every export always due, no rate limit (pure dispatch + bookkeeping per poll). "Paced":
  the default ``PollPolicy`` and the default adaptive limiter, as a user would run it.
  Paced, the process is mostly idle and wakes tens of times a second; the suite counts
  those wake-ups, measures what the same number of wake-ups costs an idle loop on this
  machine, and reports the per-poll figure with and without that platform price.
* Event-loop lag p99 during a second paced run (a ticker measuring sleep overshoot, kept
  out of the CPU run since it wakes the loop 100 times a second), including the start,
  when the waiter builds its heap.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tenacity import wait_none

from qianfan_export_wait.client import ClientStats
from qianfan_export_wait.models import parse_export_status
from qianfan_export_wait.ratelimit import FixedRateLimiter
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS, export_id_str_for
from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

from .common import LoopLagProbe, SuiteResult, Target, WakeCounter, idle_wake_cpu, sim_env
from .simserver import REPO_ROOT, SimProcess

RSS_TARGET_MB = 80.0
SCHEDULING_TARGET_US = 10.0
_WARMUP_SECONDS = 0.5
_RSS_MAX_SECONDS = 180.0
_MILLION_SECONDS = 12.0


class InstantClient:
    """Stands in for ``ExportStatusClient``: every poll answers Pending at once."""

    def __init__(self) -> None:
        self.stats = ClientStats()
        self.credentials = SIMULATOR_CREDENTIALS
        self.base_url = "in-process"
        self._status = parse_export_status(
            {"log_id": "1", "result": {"exportID": 1, "state": "Pending"}}
        )

    async def fetch_once(self, export_id: object) -> object:
        self.stats.requests += 1
        return self._status


def _make_waiter(client: InstantClient, saturated: bool) -> ExportWaiter:
    if saturated:
        return ExportWaiter(
            client,  # type: ignore[arg-type]
            policy=PollPolicy(wait=wait_none(), timeout=None),
            limiter=FixedRateLimiter(1e9),
        )
    return ExportWaiter(client, policy=PollPolicy(timeout=None))  # type: ignore[arg-type]


async def _cpu_per_poll(count: int, seconds: float, saturated: bool) -> dict[str, float]:
    """Poll ``count`` exports for ``seconds``; CPU and polls are read while every export
    is still pending, so the figure holds no end-of-run bookkeeping. Nothing else runs
    on the loop (the lag probe wakes it 100 times a second: it gets a run of its own)."""
    client = InstantClient()
    waiter = _make_waiter(client, saturated)
    gc.collect()
    waiting = asyncio.ensure_future(waiter.wait_all(list(range(1, count + 1))))
    # The heap is built and every id validated before the first poll: a per-export cost,
    # kept out of the per-poll figure (it shows as the loop-lag maximum instead).
    await asyncio.sleep(_WARMUP_SECONDS)
    with WakeCounter() as wakes:
        cpu_started = time.process_time()
        wall_started = time.monotonic()
        polls_before = client.stats.requests
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu_started
        wall = time.monotonic() - wall_started
        polls = client.stats.requests - polls_before
    waiting.cancel()
    await asyncio.wait({waiting})
    figures = {
        "seconds": round(wall, 2),
        "polls": polls,
        "polls_per_s": round(polls / wall),
        "cpu_us_per_poll": round(cpu / max(polls, 1) * 1e6, 2),
        "cpu_share": round(cpu / wall, 3),
        "blocking_wakeups_per_s": round(wakes.blocking / wall, 1),
    }
    if not saturated:
        # The same number of wake-ups of an idle loop, measured next: what the platform
        # charges for waking at all, which no scheduler can avoid once it has to wake.
        per_wake = await idle_wake_cpu(wakes.blocking / wall, min(seconds, 5.0))
        platform = per_wake * wakes.blocking
        figures["idle_wakeup_cpu_us"] = round(per_wake * 1e6, 1)
        figures["cpu_us_per_poll_less_idle_wakeups"] = round(
            max(cpu - platform, 0.0) / max(polls, 1) * 1e6, 2
        )
    return figures


async def _loop_lag(count: int, seconds: float, saturated: bool) -> dict[str, float]:
    """Event-loop lag while polling ``count`` exports, from the start (heap building
    included) for ``seconds``."""
    client = InstantClient()
    waiter = _make_waiter(client, saturated)
    gc.collect()
    probe = LoopLagProbe()
    probe.start()
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(waiter.wait_all(list(range(1, count + 1))))
    await asyncio.sleep(_WARMUP_SECONDS + seconds)
    lag = await probe.stop()
    waiting.cancel()
    await asyncio.wait({waiting})
    return lag


async def _cli_run(
    sim: SimProcess, ids_path: Path, count: int, options: list[str], stop_after: float | None
) -> dict[str, float]:
    """The CLI waiting on ``ids_path``: run to its end, or sent SIGTERM after
    ``stop_after`` s. Peak RSS and CPU come from ``os.wait4``; the first request's time from
    the simulator's request log (both clocks are the system's monotonic clock)."""
    await sim.reset()
    command = [sys.executable, "-m", "qianfan_export_wait", "wait", "--ids-file", str(ids_path)]
    started = time.monotonic()
    # Popen and wait4(WNOHANG) do not block; wait4 is what gives the child's peak RSS.
    process = subprocess.Popen(  # noqa: ASYNC220
        [*command, *options, "--quiet"],
        cwd=REPO_ROOT,
        env=sim_env(sim.base_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    swept_at = None
    signalled_at = None
    checked_at = started
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # noqa: ASYNC222
            if pid:
                break
            now = time.monotonic()
            # The sweep check walks the simulator's whole table: once a second, and not
            # on the million-id runs, where it would slow the simulator down.
            if swept_at is None and stop_after is None and now - checked_at >= 1.0:
                checked_at = now
                if (await sim.stats())["exports"]["polled"] >= count:
                    swept_at = now
            if signalled_at is None and stop_after is not None and now - started >= stop_after:
                process.send_signal(signal.SIGTERM)
                signalled_at = now
            if now - started > _RSS_MAX_SECONDS:
                process.kill()
            await asyncio.sleep(0.2)
        ended = time.monotonic()
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    stats = await sim.stats(requests=True)
    first_request = min((when for when, _ in stats.get("request_log") or []), default=math.nan)
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "exit_code": process.returncode,
        "seconds": round(ended - started, 1),
        "requests": stats["total_requests"],
        "first_request_after_s": round(first_request - started, 2),
        "every_id_polled_after_s": round(swept_at - started, 1) if swept_at else math.nan,
        "exit_after_sigterm_s": round(ended - signalled_at, 2) if signalled_at else math.nan,
    }


async def _write_ids(sim: SimProcess, folder: str, count: int, mixed: bool) -> Path:
    """``count`` held exports on the simulator, their ids in a file: ints, or every other
    one in its string form when ``mixed``."""
    ids = await sim.add(count, held=True)
    path = Path(folder) / f"ids-{count}{'-mixed' if mixed else ''}.txt"
    with path.open("w", encoding="utf-8") as out:
        for export_id in ids:
            out.write(f"{export_id_str_for(export_id) if mixed and export_id % 2 else export_id}\n")
    return path


async def _rss_runs(quick: bool) -> dict[str, dict[str, float]]:
    """The CLI on 1 id (the baseline), 10k and 100k ids run to their deadline, when every
    export times out and is printed together, and 1M ids stopped by SIGTERM."""
    timeout = 8.0 if quick else 60.0
    runs: list[tuple[str, int, bool, list[str], float | None]] = [
        ("1", 1, False, ["--timeout", "2"], None),
        ("10k", 10_000, False, ["--timeout", str(timeout)], None),
        ("100k", 100_000, False, ["--timeout", str(timeout)], None),
    ]
    if not quick:
        runs += [
            ("1M", 1_000_000, False, ["--timeout", "3600"], _MILLION_SECONDS),
            ("1M_mixed", 1_000_000, True, ["--timeout", "3600"], _MILLION_SECONDS),
        ]
    results: dict[str, dict[str, float]] = {}
    async with SimProcess(log_requests=True) as sim:
        with tempfile.TemporaryDirectory() as folder:
            for key, count, mixed, options, stop_after in runs:
                path = await _write_ids(sim, folder, count, mixed)
                gc.collect()
                results[key] = await _cli_run(sim, path, count, options, stop_after)
                path.unlink()
    return results


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("scale")
    saturated_seconds, paced_seconds = (1.0, 2.0) if quick else (3.0, 15.0)
    rss = await _rss_runs(quick)
    result.metrics["cli"] = rss
    result.targets.append(
        Target(
            "100k ids: peak RSS of the CLI over the whole run, timeouts printed",
            rss["100k"]["peak_rss_mb"],
            RSS_TARGET_MB,
            "MB",
        )
    )
    for key in ("1M", "1M_mixed"):
        if key in rss:
            label = "1M ids" if key == "1M" else "1M ids, half as strings"
            result.targets.append(
                Target(f"{label}: peak RSS of the CLI", rss[key]["peak_rss_mb"], 300.0, "MB")
            )
            result.targets.append(
                Target(
                    f"{label}: first request after start",
                    rss[key]["first_request_after_s"],
                    1.0,
                    "s",
                )
            )
    for count in (10_000, 100_000):
        key = f"{count // 1000}k"
        saturated = await _cpu_per_poll(count, saturated_seconds, saturated=True)
        paced = await _cpu_per_poll(count, paced_seconds, saturated=False)
        paced.update(await _loop_lag(count, paced_seconds, saturated=False))
        result.metrics[key] = {"saturated": saturated, "paced": paced}
        result.targets.append(
            Target(
                f"{key} ids: scheduling CPU per poll (saturated)",
                saturated["cpu_us_per_poll"],
                SCHEDULING_TARGET_US,
                "us",
            )
        )
        result.targets.append(
            Target(
                f"{key} ids: scheduling CPU per poll (paced, default policy)",
                paced["cpu_us_per_poll"],
                SCHEDULING_TARGET_US,
                "us",
            )
        )
        result.targets.append(
            Target(
                f"{key} ids: the same, less the platform's CPU per idle wake-up",
                paced["cpu_us_per_poll_less_idle_wakeups"],
                SCHEDULING_TARGET_US,
                "us",
            )
        )
    result.targets.append(
        Target(
            "100k ids: event-loop lag p99 (paced)",
            result.metrics["100k"]["paced"]["loop_lag_p99_ms"],
            math.inf,
            "ms",
        )
    )
    timeout = "8" if quick else "60"
    result.notes.append(
        f"RSS: the CLI waits on held exports with --timeout {timeout} and runs to its end, "
        "every export timing out and printed together (exit 2)"
        + ("" if quick else f"; the 1M runs get SIGTERM after {_MILLION_SECONDS:g} s (exit 143)")
    )
    return result
