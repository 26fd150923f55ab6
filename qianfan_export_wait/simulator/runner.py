"""Run the simulator in the foreground: what ``qianfan-export-wait simulate`` calls."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ..auth import Credentials
from ..errors import ConfigurationError, MissingCredentialsError
from .app import Simulator
from .config import FaultRates, SimulatorConfig

__all__ = ["add_simulate_arguments", "run_simulator", "simulate_from_args", "simulate_main"]


async def run_simulator(
    credentials: Credentials,
    *,
    exports: int = 100,
    port: int = 0,
    host: str = "127.0.0.1",
    seed: int = 0,
    qps: float | None = None,
    faults: float | FaultRates = 0.0,
    max_seconds: float = 8.0,
    fail_ratio: float = 0.1,
    slow_delay: float = 2.0,
    retry_after: float | None = None,
    clock_skew: float = 0.0,
    stream: TextIO | None = None,
    on_ready: Callable[[Simulator, str], None] | None = None,
) -> None:
    """Serve exports 1..``exports`` until cancelled (Ctrl-C), then print the request counts.

    The base URL and the shortened access key (never the secret) go to ``stream``
    (default stderr); ``on_ready(simulator, base_url)`` is called once listening.
    ``faults`` is a combined rate split evenly across the five kinds, or a ``FaultRates``.
    """
    out = sys.stderr if stream is None else stream
    rates = faults if isinstance(faults, FaultRates) else FaultRates.even(faults)
    config = SimulatorConfig(
        seed=seed,
        qps=qps,
        faults=rates,
        slow_delay=slow_delay,
        retry_after=retry_after,
        clock_skew=clock_skew,
    )
    simulator = Simulator(credentials, config)
    simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=fail_ratio)
    qps_text = "unlimited" if qps is None else f"{qps:g}"
    async with simulator.serve(host, port) as base_url:
        print(
            f"qianfan-export-wait simulator listening on {base_url}\n"
            f"  access key {credentials.masked_access_key} (the secret key is not shown)\n"
            f"  exports 1..{exports}, seed {seed}, qps {qps_text}, "
            f"fault rate {rates.total:g}\n"
            f"  point clients at it: export QIANFAN_CONSOLE_API_BASE_URL={base_url}\n"
            f"  statistics: {base_url}/_sim/stats   (Ctrl-C stops)",
            file=out,
            flush=True,
        )
        if on_ready is not None:
            on_ready(simulator, base_url)
        try:
            await asyncio.Event().wait()
        finally:
            counts = simulator.stats.requests_by_outcome
            summary = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
            print(
                f"simulator stopped after {simulator.stats.total_requests} requests"
                f"{': ' + summary if summary else ''}",
                file=out,
                flush=True,
            )


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options (``--port --exports --seed --qps --faults ...``)."""
    parser.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--exports", type=int, default=100, help="serve exports 1..N")
    parser.add_argument("--seed", type=int, default=0, help="seed for schedules and faults")
    parser.add_argument("--qps", type=float, default=None, help="requests per second allowed")
    parser.add_argument(
        "--faults", type=float, default=0.0, help="combined fault rate, split over 5 kinds"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=8.0, help="exports finish within this many seconds"
    )
    parser.add_argument(
        "--fail-ratio", type=float, default=0.1, help="share of exports that end in Fail"
    )
    parser.add_argument(
        "--slow-delay", type=float, default=2.0, help="delay of the slow-response fault"
    )
    parser.add_argument(
        "--retry-after", type=float, default=None, help="Retry-After seconds on throttling"
    )
    parser.add_argument(
        "--clock-skew", type=float, default=0.0, help="shift the server clock by seconds"
    )


def simulate_from_args(args: argparse.Namespace, credentials: Credentials | None = None) -> int:
    """Run the simulator from parsed ``simulate`` options until Ctrl-C; the exit status.

    Credentials default to ``QIANFAN_ACCESS_KEY``/``QIANFAN_SECRET_KEY``: the simulator
    accepts exactly that pair, so clients run with the same environment are let in.
    """
    if credentials is None:
        try:
            credentials = Credentials.from_env()
        except MissingCredentialsError as exc:
            print(
                f"qianfan-export-wait simulate: {exc}. Any pair will do for the simulator, "
                "e.g. QIANFAN_ACCESS_KEY=test-ak QIANFAN_SECRET_KEY=test-sk; clients "
                "must use the same pair.",
                file=sys.stderr,
            )
            return 2
    try:
        asyncio.run(
            run_simulator(
                credentials,
                exports=args.exports,
                port=args.port,
                seed=args.seed,
                qps=args.qps,
                faults=args.faults,
                max_seconds=args.max_seconds,
                fail_ratio=args.fail_ratio,
                slow_delay=args.slow_delay,
                retry_after=args.retry_after,
                clock_skew=args.clock_skew,
            )
        )
    except KeyboardInterrupt:
        return 0
    except (ConfigurationError, ValueError, OSError) as exc:
        print(f"qianfan-export-wait simulate: {exc}", file=sys.stderr)
        return 2
    return 0


def simulate_main(argv: Sequence[str] | None = None) -> int:
    """Parse ``simulate`` options from ``argv`` (default ``sys.argv[1:]``) and run."""
    parser = argparse.ArgumentParser(
        prog="qianfan-export-wait simulate",
        description="Serve a local fake of the Qianfan export-status API on 127.0.0.1.",
    )
    add_simulate_arguments(parser)
    return simulate_from_args(parser.parse_args(argv))
