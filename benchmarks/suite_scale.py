"""``scale``: 10,000 and 100,000 pending exports.

* Peak RSS of the whole waiting process: the real CLI (``qianfan-export-wait wait
  --ids-file``) in a subprocess, polling held exports on the simulator until every id
  has been answered at least once and 10 s more (the steady state: every pending export
  holds a last status), stopped with SIGTERM; its peak RSS comes from ``os.wait4``. A
  one-id run gives the baseline, so the per-id cost is visible too. ``--quick`` stops
  after 3 s instead.
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
import threading
import time
from pathlib import Path

from tenacity import wait_none

from qianfan_export_wait.client import BASE_URL_ENV, ClientStats
from qianfan_export_wait.models import parse_export_status
from qianfan_export_wait.ratelimit import FixedRateLimiter
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS
from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

from .common import LoopLagProbe, SuiteResult, Target, WakeCounter, idle_wake_cpu
from .simserver import REPO_ROOT, SimProcess

RSS_TARGET_MB = 100.0
SCHEDULING_TARGET_US = 10.0
_WARMUP_SECONDS = 0.5
_RSS_MAX_SECONDS = 120.0


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


def _peak_rss_of_cli(
    base_url: str, ids_path: str, stop: threading.Event, max_seconds: float
) -> dict[str, float]:
    env = dict(os.environ)
    env.update(
        {
            BASE_URL_ENV: base_url,
            "QIANFAN_ACCESS_KEY": SIMULATOR_CREDENTIALS.access_key,
            "QIANFAN_SECRET_KEY": SIMULATOR_CREDENTIALS.secret_key,
        }
    )
    command = [
        sys.executable,
        "-m",
        "qianfan_export_wait",
        "wait",
        "--ids-file",
        ids_path,
        "--timeout",
        "3600",
        "--no-progress",
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stop.wait(max_seconds)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "exit_code": process.returncode,
    }


async def _rss_runs(
    sizes: list[int], seconds: float, *, until_every_id_polled: bool
) -> dict[str, dict[str, float]]:
    """Peak RSS of the CLI waiting on held exports. With ``until_every_id_polled`` the CLI
    runs until the simulator has answered every id at least once, then ``seconds`` more:
    the steady state, where every pending export holds a last status. Otherwise it runs
    ``seconds`` in all."""
    results: dict[str, dict[str, float]] = {}
    async with SimProcess() as sim:
        with tempfile.TemporaryDirectory() as folder:
            for count in [1, *sizes]:
                ids = await sim.add(count, held=True)
                path = Path(folder) / f"ids-{count}.txt"
                path.write_text("\n".join(map(str, ids)) + "\n", encoding="utf-8")
                before = await sim.stats()
                stop = threading.Event()
                started = time.monotonic()
                running = asyncio.ensure_future(
                    asyncio.to_thread(
                        _peak_rss_of_cli, sim.base_url, str(path), stop, _RSS_MAX_SECONDS
                    )
                )
                hold = seconds if count > 1 else 2.0
                swept_at = None
                while not running.done():
                    now = time.monotonic()
                    if swept_at is None and (
                        not until_every_id_polled
                        or (await sim.stats())["exports"]["polled"]
                        >= before["exports"]["polled"] + count
                    ):
                        swept_at = now
                    if swept_at is not None and now - swept_at >= hold:
                        stop.set()
                    await asyncio.sleep(0.25)
                figures = await running
                after = await sim.stats()
                polls = after["total_requests"] - before["total_requests"]
                figures["polls"] = polls
                figures["seconds"] = round(time.monotonic() - started, 1)
                figures["every_id_polled_after_s"] = (
                    round(swept_at - started, 1) if swept_at is not None else math.nan
                )
                figures["cpu_us_per_poll_with_http"] = round(
                    figures["cpu_s"] / max(polls, 1) * 1e6, 1
                )
                results[str(count)] = figures
    return results


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("scale")
    sizes = [10_000, 100_000]
    rss_seconds = 3.0 if quick else 10.0
    saturated_seconds, paced_seconds = (1.0, 2.0) if quick else (3.0, 15.0)
    rss = await _rss_runs(sizes, rss_seconds, until_every_id_polled=not quick)
    baseline = rss["1"]["peak_rss_mb"]
    result.metrics["cli_run_seconds"] = rss_seconds
    result.metrics["baseline_rss_mb_1_id"] = baseline
    for count in sizes:
        key = f"{count // 1000}k"
        figures = rss[str(count)]
        saturated = await _cpu_per_poll(count, saturated_seconds, saturated=True)
        paced = await _cpu_per_poll(count, paced_seconds, saturated=False)
        paced.update(await _loop_lag(count, paced_seconds, saturated=False))
        result.metrics[key] = {
            "cli_peak_rss_mb": figures["peak_rss_mb"],
            "cli_rss_over_1_id_mb": round(figures["peak_rss_mb"] - baseline, 1),
            "cli_polls": figures["polls"],
            "cli_seconds": figures["seconds"],
            "cli_every_id_polled_after_s": figures["every_id_polled_after_s"],
            "cli_cpu_us_per_poll_with_http": figures["cpu_us_per_poll_with_http"],
            "cli_exit_code": figures["exit_code"],
            "saturated": saturated,
            "paced": paced,
        }
        result.targets.append(
            Target(f"{key} ids: peak RSS of the CLI", figures["peak_rss_mb"], RSS_TARGET_MB, "MB")
        )
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
    small, large = (rss[str(n)]["peak_rss_mb"] for n in sizes)
    result.metrics["cli_marginal_bytes_per_id"] = round(
        (large - small) * 1024 * 1024 / (sizes[1] - sizes[0])
    )
    result.targets.append(
        Target(
            "100k ids: event-loop lag p99 (paced)",
            result.metrics["100k"]["paced"]["loop_lag_p99_ms"],
            math.inf,
            "ms",
        )
    )
    result.notes.append(
        "RSS: the CLI polls held exports "
        + ("for 3 s" if quick else "until each was answered once, then 10 s more")
        + ", then gets SIGTERM; exit code 143 is expected"
    )
    return result
