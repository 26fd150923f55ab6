"""``python -m benchmarks [--quick] [--only NAME ...]``: run the suites, print a table,
write ``results/latest.json`` and PNG plots.

The ``soak`` suite runs for ``--soak-minutes`` (30) and only when named (``--only soak``);
``--quick`` runs a few seconds of it with the rest."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import (
    suite_acceptance,
    suite_cli,
    suite_client,
    suite_download,
    suite_durable,
    suite_e2e,
    suite_fleet,
    suite_lag,
    suite_scale,
    suite_sdk,
    suite_service,
    suite_soak,
    suite_throttle,
)
from .common import SuiteResult

SUITES: dict[str, Callable[[argparse.Namespace], Awaitable[SuiteResult]]] = {
    "client": lambda args: suite_client.run(args.quick),
    "cli": lambda args: suite_cli.run(args.quick),
    "scale": lambda args: suite_scale.run(args.quick),
    "lag": lambda args: suite_lag.run(args.quick),
    "throttle": lambda args: suite_throttle.run(args.quick),
    "e2e": lambda args: suite_e2e.run(args.quick),
    "sdk": lambda args: suite_sdk.run(args.quick, args.sdk_python),
    "acceptance": lambda args: suite_acceptance.run(args.quick),
    "service": lambda args: suite_service.run(args.quick),
    "download": lambda args: suite_download.run(args.quick),
    "fleet": lambda args: suite_fleet.run(args.quick, args.sdk_python),
    "soak": lambda args: suite_soak.run(args.quick, args.soak_minutes, args.output),
    "durable": lambda args: suite_durable.run(args.quick, args.durable_ids),
}
# Suites too long for a full run: they run only when named with --only (or as --quick).
ON_REQUEST = {"soak"}
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a few minutes)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SUITES),
        metavar="NAME",
        help=f"run only this suite (repeatable): {', '.join(SUITES)}",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--sdk-python",
        default=os.environ.get("QIANFAN_BENCH_SDK_PYTHON"),
        metavar="PATH",
        help="interpreter with the official qianfan SDK for the sdk and fleet suites "
        "(default: $QIANFAN_BENCH_SDK_PYTHON, else this one)",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=suite_soak.DEFAULT_MINUTES,
        metavar="MIN",
        help=f"length of the soak suite (default {suite_soak.DEFAULT_MINUTES:g}; "
        "it runs only with --only soak, or for seconds with --quick)",
    )
    parser.add_argument(
        "--durable-ids",
        type=int,
        default=None,
        metavar="N",
        help="exports in the durable suite's throughput case (default 10000, 2000 with "
        "--quick; the issue's figure is 100000)",
    )
    args = parser.parse_args(argv)
    if not args.soak_minutes > 0:
        parser.error(f"--soak-minutes must be above 0, got {args.soak_minutes:g}")
    return args


async def _run_all(args: argparse.Namespace, names: list[str]) -> dict[str, SuiteResult]:
    results: dict[str, SuiteResult] = {}
    for name in names:
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        gc.collect()
        started = time.monotonic()
        try:
            result = await SUITES[name](args)
        except Exception as exc:  # one broken suite must not hide the others' figures
            result = SuiteResult(name, status="error")
            result.notes.append(f"{type(exc).__name__}: {exc}")
            result.notes.append(traceback.format_exc(limit=3))
        result.seconds = time.monotonic() - started
        print(f"   {name}: {result.status} in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results[name] = result
    return results


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, rows)
    else:
        rows.append((prefix, _format(value)))


def target_table(document: dict[str, Any]) -> str:
    """A Markdown table of every target, whether it holds, and by how much."""
    lines = ["| suite | target | measured | limit | holds |", "|---|---|---|---|---|"]
    for name, suite in document["suites"].items():
        if suite["status"] != "ok":
            why = suite["notes"][0] if suite["notes"] else ""
            lines.append(f"| {name} | ({suite['status']}: {why}) | | | |")
            continue
        for target in suite["targets"]:
            if target["limit"] in (math.inf, "inf", None) or (
                isinstance(target["limit"], float) and math.isinf(target["limit"])
            ):
                limit = "(reported)"
            else:
                limit = f"{target['op']} {_format(target['limit'])} {target['unit']}".strip()
            verdict = "yes" if target["holds"] else "**NO**"
            measured = f"{_format(target['value'])} {target['unit']}".strip()
            lines.append(f"| {name} | {target['name']} | {measured} | {limit} | {verdict} |")
    return "\n".join(lines)


def metric_table(document: dict[str, Any]) -> str:
    """A Markdown table of every headline metric."""
    lines = ["| suite | metric | value |", "|---|---|---|"]
    for name, suite in document["suites"].items():
        rows: list[tuple[str, str]] = []
        _flatten("", suite["metrics"], rows)
        lines.extend(f"| {name} | {key} | {value} |" for key, value in rows)
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_json_safe(inner) for inner in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit 0 unless a suite broke (missed targets are not errors)."""
    args = _parse(argv)
    if args.only:
        names = [name for name in SUITES if name in args.only]
    else:
        names = [name for name in SUITES if args.quick or name not in ON_REQUEST]
    started = time.monotonic()
    results = asyncio.run(_run_all(args, names))
    document: dict[str, Any] = {
        "schema": 1,
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "quick": args.quick,
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
        "suites": {name: result.as_dict() for name, result in results.items()},
    }
    print(target_table(document))
    print()
    print(metric_table(document))
    args.output.mkdir(parents=True, exist_ok=True)
    document["plots"] = []
    if not args.no_plots:
        from .plots import write_plots

        try:
            document["plots"] = [path.name for path in write_plots(document, args.output)]
        except ImportError:
            print("note: matplotlib is not installed; plots skipped", file=sys.stderr)
    document = _json_safe(document)
    path = args.output / "latest.json"
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {path} ({document['seconds']} s)", file=sys.stderr)
    return 1 if any(result.status == "error" for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
