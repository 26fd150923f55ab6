"""``python -m benchmarks.observe_overhead [--seconds S] [--rounds N]``: the waiter's CPU per
status request with metrics, tracing and an ``on_poll`` hook on, against all off.

The simulator runs in a process of its own (``SimProcess``), so this process's CPU
(``time.process_time``: every thread) is the client's and the waiter's only. Each round
waits ``S`` seconds on held exports (never finishing) through a fresh client and waiter,
with instruments off and on in turn (which goes first alternates), so drift hits both
sides alike; the medians
are compared. Prints one JSON object; figures go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from qianfan_export_wait import ExportWaiter, PollPolicy
from qianfan_export_wait.observe import NO_OBSERVERS, Observer, PollEvent

from .common import make_client
from .simserver import SimProcess


def _instruments() -> tuple[list[Observer], Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    from qianfan_export_wait.metrics import PrometheusObserver
    from qianfan_export_wait.tracing import TracingObserver

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    seen = [0]

    def on_poll(event: PollEvent) -> None:
        seen[0] += 1

    return [PrometheusObserver(CollectorRegistry()), TracingObserver(provider)], on_poll


async def _round(base_url: str, ids: list[int], seconds: float, on: bool) -> float:
    """CPU microseconds per request of one round."""
    observers, on_poll = _instruments() if on else (list(NO_OBSERVERS), None)
    policy = PollPolicy(min_delay=0.05, max_delay=0.05, timeout=seconds)
    async with make_client(base_url) as client:
        waiter = ExportWaiter(
            client, policy=policy, qps=1e6, max_in_flight=32, observers=observers, on_poll=on_poll
        )
        async with waiter:
            # Each id its own caller: a span per wait, as a service would have them.
            cpu = time.process_time()
            await asyncio.gather(*(waiter.submit(i) for i in ids))
            cpu = time.process_time() - cpu
            requests = waiter.stats.requests
    return cpu / max(1, requests) * 1e6


def hot_path_us() -> float:
    """Microseconds per request of what instruments add to the driver's hot path (the
    ``poll`` call: event, classification, counters, histogram, hook), alone: on a shared
    machine the end-to-end difference drowns in noise, this does not."""
    from qianfan_export_wait.models import parse_export_status
    from qianfan_export_wait.observe import Guard, Instruments

    observers, on_poll = _instruments()
    instruments = Instruments(observers, on_poll, Guard())
    status = parse_export_status(
        {"log_id": "1", "result": {"exportID": 5, "state": "Running", "exportType": "local"}}
    )
    poll = instruments.poll
    assert poll is not None
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(20_000):
            poll(5, status, None, 0.01)
        best = min(best, (time.process_time() - started) / 20_000 * 1e6)
    return best


async def main(seconds: float, rounds: int, exports: int) -> dict[str, Any]:
    """Run the rounds; return the medians and the overhead in percent."""
    async with SimProcess() as sim:
        ids = await sim.add(exports, held=True)
        await _round(sim.base_url, ids, 1.0, True)  # warm up: imports, connections
        off: list[float] = []
        on: list[float] = []
        for turn in range(rounds):
            # Which side goes first alternates: a second run is not measured alike.
            for side in (False, True) if turn % 2 == 0 else (True, False):
                (on if side else off).append(await _round(sim.base_url, ids, seconds, side))
    off_us, on_us = statistics.median(off), statistics.median(on)
    hot = hot_path_us()
    return {
        "hot_path_us_per_request": round(hot, 2),
        "hot_path_percent_of_off": round(hot / off_us * 100, 2),
        "cpu_us_per_request_off": round(off_us, 1),
        "cpu_us_per_request_on": round(on_us, 1),
        "overhead_percent": round((on_us / off_us - 1) * 100, 1),
        "rounds_off": [round(x, 1) for x in off],
        "rounds_on": [round(x, 1) for x in on],
        "seconds_per_round": seconds,
        "exports": exports,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe_overhead")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.seconds, args.rounds, args.exports)), indent=2))
