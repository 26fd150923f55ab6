"""CPU per status request and per poll, two checkouts against each other in one run:
``python -m benchmarks.structure_cpu --before /path/to/old/checkout [--rounds 9]``.

Each checkout runs with its own ``.venv`` (``<checkout>/.venv/bin/python``); "after" is
this one. One simulator (this checkout's, held exports that stay Pending) serves both.
Every round starts a fresh worker process per side, the side that goes first
alternating, pinned to one core when there are two (the simulator to the other). A
worker measures, with ``time.process_time`` of its own process:

* ``client_us``: CPU per V1 ``get_status`` (32 at a time, ``CALLS`` calls after a warm-up);
* ``poll_us``: CPU per poll of an ``ExportWaiter`` over ``IDS`` exports, every export
  always due and no rate limit, its client answering Pending at once (the waiter's own
  work, as the ``scale`` suite measures it);
* ``waiter_us``: CPU per poll of an ``ExportWaiter`` over the real client and the
  simulator (the waiter's work and the request together), every export always due.

Then, under ``cProfile``, the Python function calls per request (the ``client_us`` loop)
and per poll (the ``poll_us`` waiter): all of them (``client_calls``, ``poll_calls``) and
the library's own (``*_lib_calls``). They hardly move with the machine's load, unlike CPU
time, and stand in for instruction counts where ``perf`` cannot count them.

Both sides run as a default install: the optional ``prometheus_client`` and
``opentelemetry`` are hidden from the workers (a waiter turns metrics and traces on by
default when they are installed; ``benchmarks.observe_overhead`` measures that), unless
``--integrations`` is given.

Prints one JSON line per round and side, then the medians, ranges and after/before ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_WORKER_CONCURRENCY = 32
_INTEGRATIONS = ("prometheus_client", "opentelemetry")
_WARMUP_SECONDS = 0.5


class _Counted:
    """Python function calls made inside ``with``, under ``cProfile``."""

    def __enter__(self) -> _Counted:
        import cProfile

        self._profile = cProfile.Profile()
        self._profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        import pstats

        self._profile.disable()
        stats = pstats.Stats(self._profile).stats  # type: ignore[attr-defined]
        self.calls = sum(row[1] for row in stats.values())
        self.library_calls = sum(
            row[1] for (path, _, _), row in stats.items() if "qianfan_export_wait" in path
        )


async def _client_us(url: str, calls: int, counts: dict[str, float] | None = None) -> float:
    from qianfan_export_wait import ExportStatusClient
    from qianfan_export_wait.simulator.credentials import SIMULATOR_CREDENTIALS

    async with ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=url) as client:

        async def timed(count: int) -> float:
            ids = iter([n % 200 + 1 for n in range(count)])

            async def caller() -> None:
                for export_id in ids:
                    await client.get_status(export_id)

            started = time.process_time()
            await asyncio.gather(*(caller() for _ in range(_WORKER_CONCURRENCY)))
            return (time.process_time() - started) / count

        await timed(300)  # connections, imports, caches
        cpu = await timed(calls) * 1e6
        if counts is not None:
            with _Counted() as counted:
                await timed(1000)
            counts["client_calls"] = counted.calls / 1000
            counts["client_lib_calls"] = counted.library_calls / 1000
        return cpu


async def _waiter_us(
    client: Any, count: int, seconds: float, counts: dict[str, float] | None = None
) -> float:
    """CPU per poll of a waiter over ``client`` polling ``count`` always-due exports."""
    from tenacity import wait_none

    from qianfan_export_wait.ratelimit import FixedRateLimiter
    from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

    waiter = ExportWaiter(
        client,
        policy=PollPolicy(wait=wait_none(), timeout=None),
        limiter=FixedRateLimiter(1e9),
    )
    waiting = asyncio.ensure_future(waiter.wait_all(list(range(1, count + 1))))
    await asyncio.sleep(_WARMUP_SECONDS)
    started = time.process_time()
    polls_before = client.stats.requests
    await asyncio.sleep(seconds)
    cpu = time.process_time() - started
    polls: int = client.stats.requests - polls_before
    if counts is not None:
        polls_before = client.stats.requests
        with _Counted() as counted:
            await asyncio.sleep(1.0)
        profiled = max(client.stats.requests - polls_before, 1)
        counts["poll_calls"] = counted.calls / profiled
        counts["poll_lib_calls"] = counted.library_calls / profiled
    waiting.cancel()
    await asyncio.wait({waiting})
    return cpu / max(polls, 1) * 1e6


class _InstantClient:
    """Answers every poll Pending at once (the ``scale`` suite's stand-in)."""

    def __init__(self) -> None:
        from qianfan_export_wait.client import ClientStats
        from qianfan_export_wait.models import parse_export_status
        from qianfan_export_wait.simulator.credentials import SIMULATOR_CREDENTIALS

        self.stats = ClientStats()
        self.credentials = SIMULATOR_CREDENTIALS
        self.base_url = "in-process"
        self._status = parse_export_status(
            {"log_id": "1", "result": {"exportID": 1, "state": "Pending"}}
        )

    async def fetch_once(self, export_id: object) -> object:
        self.stats.requests += 1
        return self._status


async def _worker(url: str, calls: int, ids: int, seconds: float) -> dict[str, Any]:
    import qianfan_export_wait
    from qianfan_export_wait import ExportStatusClient
    from qianfan_export_wait.simulator.credentials import SIMULATOR_CREDENTIALS

    figures: dict[str, Any] = {"package": str(Path(qianfan_export_wait.__file__).parent)}
    counts: dict[str, float] = {}
    figures["client_us"] = await _client_us(url, calls, counts)
    figures["poll_us"] = await _waiter_us(_InstantClient(), ids, seconds, counts)
    async with ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=url) as client:
        figures["waiter_us"] = await _waiter_us(client, 200, seconds)
    return {**figures, **counts}


def _run_side(
    checkout: Path, url: str, args: argparse.Namespace, cpu: int | None
) -> dict[str, Any]:
    command = [
        str(checkout / ".venv" / "bin" / "python"),
        str(Path(__file__).resolve()),
        "worker",
        url,
        str(args.calls),
        str(args.ids),
        str(args.seconds),
        "integrations" if args.integrations else "default",
    ]
    process = subprocess.Popen(
        command, cwd=checkout, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"worker in {checkout} exited {process.returncode}")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if not Path(figures["package"]).is_relative_to(checkout):
        raise RuntimeError(f"worker in {checkout} imported {figures['package']}")
    return figures


async def _drive(args: argparse.Namespace, before: Path) -> None:
    from .simserver import REPO_ROOT, SimProcess

    sides = {"before": before, "after": REPO_ROOT}
    cpus = sorted(os.sched_getaffinity(0))
    worker_cpu, server_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    async with SimProcess(cpus=None if server_cpu is None else {server_cpu}) as sim:
        await sim.add(200, max_seconds=0.0, fail_ratio=0.0, held=True)
        for round_number in range(args.rounds):
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            for name in order:
                figures = await asyncio.to_thread(
                    _run_side, sides[name], sim.base_url, args, worker_cpu
                )
                rows[name].append(figures)
                shown = {k: round(v, 2) for k, v in figures.items() if k != "package"}
                print(json.dumps({"round": round_number, "side": name, **shown}), flush=True)
    summary: dict[str, Any] = {"rounds": args.rounds}
    for key in (
        "client_us",
        "poll_us",
        "waiter_us",
        "client_calls",
        "client_lib_calls",
        "poll_calls",
        "poll_lib_calls",
    ):
        for name in sides:
            values = [row[key] for row in rows[name]]
            summary[f"{name}_{key}"] = {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
        summary[f"after_over_before_{key}"] = round(
            summary[f"after_{key}"]["median"] / summary[f"before_{key}"]["median"], 3
        )
    print(json.dumps(summary, indent=1))


def main() -> None:
    """Drive both sides (or, as ``worker``, measure one); see the module docstring."""
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        url, calls, ids, seconds, install = sys.argv[2:7]
        if install != "integrations":
            for name in _INTEGRATIONS:
                sys.modules[name] = None  # type: ignore[assignment]  # import -> ImportError
        figures = asyncio.run(_worker(url, int(calls), int(ids), float(seconds)))
        print(json.dumps(figures), flush=True)
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.structure_cpu")
    parser.add_argument("--before", required=True, help="the older checkout (with a .venv)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000, help="get_status calls per round")
    parser.add_argument("--ids", type=int, default=10000, help="exports in the poll figure")
    parser.add_argument("--seconds", type=float, default=2.0, help="window of a poll figure")
    parser.add_argument(
        "--integrations",
        action="store_true",
        help="let the workers import " + ", ".join(_INTEGRATIONS),
    )
    args = parser.parse_args()
    asyncio.run(_drive(args, Path(args.before).resolve()))


if __name__ == "__main__":
    main()
