"""The ``qianfan-export-wait`` command line: argument parsing and printing only.

JSON Lines on stdout for machines; progress and logs on stderr for people. Exit codes
(sysexits-style): 0 every export Done; 1 some Fail or error, none timed out (for
``simulate``: the address cannot be listened on); 2 some timed out; 64 bad usage, id,
option or missing credentials (nothing was sent); 69 gave up: the service stayed
unavailable; 77 authentication failure; 130 interrupted by SIGINT, 143 by SIGTERM (after
printing what is known).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO, cast

from . import __version__
from .auth import Credentials
from .client import BASE_URL_ENV, ExportStatusClient
from .errors import ApiError, AuthError, ConfigurationError, QianfanError
from .models import ExportId, ExportStatus, validate_export_id
from .redis_limit import REDIS_URL_ENV, fleet_limiter
from .waiter import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
    ExportOutcome,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    WaiterStats,
)

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69
EXIT_NOPERM = 77
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

logger = logging.getLogger("qianfan_export_wait")
SIMULATOR_CREDENTIALS = Credentials("simulator-access-key", "simulator-secret-key")
"""The pair ``simulate`` accepts when given no credentials (a test pair, not a secret)."""
_INT_ID = re.compile(r"^-?[0-9]+$")


class UsageError(Exception):
    """Bad command-line input, reported with exit code 64 before any request."""


class _Interrupted(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------- parsing helpers


def parse_id(text: str) -> ExportId:
    """A command-line id: digits become the int ``exportID``, anything else a string."""
    value: ExportId = int(text) if _INT_ID.match(text) and len(text) < 40 else text
    try:
        return validate_export_id(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def read_ids_file(path: str, stdin: TextIO) -> list[ExportId]:
    """Ids from a file (``-``: stdin), one per line; blank lines and ``#`` comments skipped."""
    if path == "-":
        return _parse_id_lines(path, stdin)
    try:
        # Line by line: 100,000 ids never sit in memory as text as well as ids.
        with open(path, encoding="utf-8") as lines:
            return _parse_id_lines(path, lines)
    except FileNotFoundError:
        raise UsageError(f"--ids-file {path!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ids-file {path!r} cannot be read: {exc}") from None


def _parse_id_lines(path: str, lines: Iterable[str]) -> list[ExportId]:
    ids: list[ExportId] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            ids.append(parse_id(text))
        except UsageError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
    return ids


def _positive(kind: type[float] | type[int], name: str) -> Callable[[str], Any]:
    def convert(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a {'whole ' if kind is int else ''}number, got {text!r}"
            ) from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    return convert


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be a whole number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be within 0-65535, got {text!r}")
    return value


def _fraction(name: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {text!r}")
        return value

    return convert


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 64, the sysexits code for bad usage
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"API base URL (default: ${BASE_URL_ENV} or https://qianfan.baidubce.com)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive(float, "--request-timeout"),
        default=10.0,
        metavar="S",
        help="seconds allowed for one request (default: 10)",
    )
    parser.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain http:// to a host that is not loopback",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = _Parser(
        prog="qianfan-export-wait",
        description="Wait for Baidu Qianfan model-evaluation result exports.",
        epilog="Credentials come from QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    status = verbs.add_parser("status", help="ask once for the status of each export id")
    status.add_argument("ids", nargs="+", metavar="ID", help="exportID (digits) or exportIDStr")
    _add_connection_options(status)

    wait = verbs.add_parser("wait", help="wait until every export is Done or Fail")
    wait.add_argument("ids", nargs="*", metavar="ID", help="exportID (digits) or exportIDStr")
    wait.add_argument("--ids-file", metavar="PATH", help="file of ids, one per line; - for stdin")
    wait.add_argument(
        "--timeout",
        type=_positive(float, "--timeout"),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="give up on an export after S seconds (default: %(default)g)",
    )
    wait.add_argument(
        "--min-delay",
        type=_positive(float, "--min-delay"),
        default=DEFAULT_MIN_DELAY,
        metavar="S",
        help="first wait between polls of one export (default: %(default)g)",
    )
    wait.add_argument(
        "--max-delay",
        type=_positive(float, "--max-delay"),
        default=DEFAULT_MAX_DELAY,
        metavar="S",
        help="longest wait between polls of one export (default: %(default)g)",
    )
    wait.add_argument(
        "--max-in-flight",
        type=_positive(int, "--max-in-flight"),
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help="requests in flight at once (default: %(default)d)",
    )
    wait.add_argument(
        "--qps",
        type=_positive(float, "--qps"),
        default=None,
        metavar="Q",
        help="never send more than Q requests per second (default: adapt to the server)",
    )
    wait.add_argument(
        "--max-unavailable",
        type=_positive(float, "--max-unavailable"),
        default=DEFAULT_MAX_UNAVAILABLE,
        metavar="S",
        help="give up on an export after S seconds with no answer from the service "
        "(connection refused, 5xx, timeouts); exit code 69 (default: %(default)g)",
    )
    wait.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_URL_ENV),
        metavar="URL",
        help="share the rate limit with every process of this account through Redis "
        f"(default: ${REDIS_URL_ENV}; needs the redis extra)",
    )
    wait.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_connection_options(wait)

    demo = verbs.add_parser("demo", help="wait for exports on the built-in simulator")
    demo.add_argument("--exports", type=_positive(int, "--exports"), default=300, metavar="N")
    demo.add_argument("--seed", type=int, default=7, metavar="S")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    demo.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")

    simulate = verbs.add_parser("simulate", help="run the local Qianfan simulator until Ctrl-C")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=_port, default=8421, metavar="P")
    simulate.add_argument("--exports", type=int, default=100, metavar="N")
    simulate.add_argument("--seed", type=int, default=0, metavar="S")
    simulate.add_argument("--qps", type=_positive(float, "--qps"), default=None, metavar="Q")
    simulate.add_argument("--faults", type=_fraction("--faults"), default=0.0, metavar="F")
    simulate.add_argument(
        "--max-seconds", type=_positive(float, "--max-seconds"), default=30.0, metavar="T"
    )
    simulate.add_argument("--fail-ratio", type=_fraction("--fail-ratio"), default=0.1, metavar="R")
    simulate.add_argument(
        "--slow-delay",
        type=_positive(float, "--slow-delay"),
        default=2.0,
        metavar="S",
        help="seconds the slow-response fault waits (default: 2)",
    )
    simulate.add_argument(
        "--retry-after",
        type=_positive(float, "--retry-after"),
        default=None,
        metavar="S",
        help="send Retry-After: S with throttled answers",
    )
    simulate.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        metavar="S",
        help="shift the simulator's clock by S seconds (to test clock-skew handling)",
    )
    simulate.add_argument("--access-key", default=None)
    simulate.add_argument("--secret-key", default=None)
    simulate.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    return parser


# ---------------------------------------------------------------- output


def outcome_record(
    export_id: ExportId,
    outcome: str,
    status: ExportStatus | None,
    error: QianfanError | None,
    polls: int,
    elapsed: float,
) -> dict[str, Any]:
    """The JSON object printed for one export."""
    if isinstance(error, ApiError):
        error_object: dict[str, Any] | None = error.to_dict()
    elif error is not None:
        error_object = {"code": None, "message": str(error), "log_id": None}
    else:
        error_object = None
    return {
        "export_id": export_id,
        "outcome": outcome,
        "state": None if status is None else status.state_name,
        "result": None if status is None else dict(status.raw),
        "error": error_object,
        "polls": polls,
        "elapsed_s": round(elapsed, 3),
    }


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def outcome_line(outcome: ExportOutcome) -> str:
    """One JSON line for a waiter outcome."""
    return _json_line(
        outcome_record(
            outcome.export_id,
            outcome.kind.value,
            outcome.status,
            outcome.error,
            outcome.polls,
            outcome.elapsed,
        )
    )


class OrderedPrinter:
    """Prints lines in the caller's order as soon as every earlier one is known."""

    def __init__(self, ids: Sequence[ExportId], out: TextIO) -> None:
        self._position: dict[ExportId, int] | None = None
        if all(type(export_id) is int for export_id in ids):
            # The usual --ids-file of numbers: two sorted arrays, 16 bytes an id where a
            # dict costs about 90 (100,000 ids: 1.6 MB instead of 9).
            numbers = cast("Sequence[int]", ids)
            order = sorted(range(len(numbers)), key=numbers.__getitem__)
            self._sorted_ids = array("q", map(numbers.__getitem__, order))
            self._slots = array("q", order)
        else:
            # int and str ids never compare equal (bools are refused): the id is the key.
            self._position = {export_id: n for n, export_id in enumerate(ids)}
        self._lines: list[str | None] = [None] * len(ids)
        self._next = 0
        self._out = out

    def _slot(self, export_id: ExportId) -> int:
        if self._position is not None:
            return self._position[export_id]
        return self._slots[bisect.bisect_left(self._sorted_ids, export_id)]

    def add(self, export_id: ExportId, line: str) -> None:
        """Record one export's line and print every line now in order."""
        self._lines[self._slot(export_id)] = line
        while self._next < len(self._lines):
            ready = self._lines[self._next]
            if ready is None:
                break
            self._out.write(ready + "\n")
            self._lines[self._next] = None
            self._next += 1
        self._out.flush()

    def flush_known(self) -> None:
        """Print every known line not printed yet (on interruption), keeping order."""
        for index in range(self._next, len(self._lines)):
            line = self._lines[index]
            if line is not None:
                self._out.write(line + "\n")
                self._lines[index] = None
        self._next = len(self._lines)
        self._out.flush()


class Progress:
    """A progress display on stderr: a rich bar when available, else one plain line."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self._enabled = enabled and stream.isatty()
        self._stream = stream
        self._total = total
        self._rich: Any = None
        self._task: Any = None
        if self._enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                return
            self._rich = RichProgress(
                TextColumn("waiting"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self._task = self._rich.add_task("wait", total=total, detail="")

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def update(self, stats: WaiterStats) -> None:
        """Show the latest counts."""
        if not self._enabled:
            return
        detail = (
            f"done {stats.done} failed {stats.failed} errors {stats.errors} "
            f"timeout {stats.timed_out} | {stats.requests} requests, "
            f"{stats.throttled} throttled, {stats.rate:.0f}/s"
        )
        if self._rich is not None:
            self._rich.update(self._task, completed=stats.finished, detail=detail)
        else:
            self._stream.write(f"\r{stats.finished}/{self._total} {detail}   ")
            self._stream.flush()


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("qianfan-export-wait: %(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _exit_code(counts: dict[OutcomeKind, int], auth_failed: bool, unavailable: bool) -> int:
    if auth_failed:
        return EXIT_NOPERM
    if unavailable:
        return EXIT_UNAVAILABLE
    if counts[OutcomeKind.TIMEOUT]:
        return EXIT_TIMEOUT
    if counts[OutcomeKind.FAILED] or counts[OutcomeKind.ERROR]:
        return EXIT_FAILED
    return EXIT_OK


# ---------------------------------------------------------------- verbs


def _make_client(args: argparse.Namespace) -> ExportStatusClient:
    return ExportStatusClient(
        Credentials.from_env(),
        base_url=args.endpoint,
        request_timeout=args.request_timeout,
        allow_insecure_http=args.insecure_http,
    )


async def _status(args: argparse.Namespace, out: TextIO) -> int:
    ids = [parse_id(text) for text in args.ids]
    client = _make_client(args)
    code = EXIT_OK
    async with client:
        for export_id in ids:
            started = time.monotonic()
            requests_before = client.stats.requests
            status: ExportStatus | None = None
            error: QianfanError | None = None
            try:
                status = await client.get_status(export_id)
            except AuthError as exc:
                logger.error(
                    "authentication failed for access key %s at %s: %s",
                    client.credentials.masked_access_key,
                    client.base_url,
                    exc,
                )
                error, code = exc, EXIT_NOPERM
            except ApiError as exc:
                error, code = exc, EXIT_FAILED
            if status is None:
                outcome = "error"
            elif status.is_terminal:
                outcome = "done" if status.state_name == "Done" else "failed"
            else:
                outcome = "pending"
            if outcome == "failed":
                code = EXIT_FAILED
            record = outcome_record(
                export_id,
                outcome,
                status,
                error,
                client.stats.requests - requests_before,
                time.monotonic() - started,
            )
            out.write(_json_line(record) + "\n")
            out.flush()
            if code == EXIT_NOPERM:
                break
    return code


async def run_wait(
    waiter: ExportWaiter,
    ids: Sequence[ExportId],
    out: TextIO,
    *,
    progress: Progress,
) -> tuple[dict[OutcomeKind, int], bool, bool]:
    """Wait for ``ids``, printing each outcome's line in order; return counts by kind,
    whether authentication failed, and whether the service stayed unavailable."""
    printer = OrderedPrinter(ids, out)
    counts = dict.fromkeys(OutcomeKind, 0)
    auth_failed = False
    unavailable = False

    async def refresh() -> None:
        while True:
            progress.update(waiter.stats)
            await asyncio.sleep(0.2)

    refresher = asyncio.ensure_future(refresh())
    try:
        with progress:
            async for outcome in waiter.as_completed(ids):
                counts[outcome.kind] += 1
                auth_failed = auth_failed or isinstance(outcome.error, AuthError)
                unavailable = unavailable or outcome.unavailable
                printer.add(outcome.export_id, outcome_line(outcome))
    finally:
        refresher.cancel()
        await asyncio.wait({refresher})
        printer.flush_known()
    return counts, auth_failed, unavailable


async def _wait(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    ids = [parse_id(text) for text in args.ids]
    if args.ids_file:
        ids.extend(read_ids_file(args.ids_file, stdin))
    if not ids:
        raise UsageError("no export ids given (pass IDs or --ids-file)")
    unique = list(dict.fromkeys(ids))
    del ids  # 100,000 ids: every copy kept alive costs megabytes
    policy = PollPolicy(
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        timeout=args.timeout,
        max_unavailable=args.max_unavailable,
    )
    async with _make_client(args) as client:
        async with fleet_limiter(
            args.redis_url, access_key=client.credentials.access_key, qps=args.qps
        ) as limiter:
            waiter = ExportWaiter(
                client,
                policy=policy,
                max_in_flight=args.max_in_flight,
                qps=args.qps,
                limiter=limiter,
            )
            progress = Progress(len(unique), not args.no_progress, sys.stderr)
            async with waiter:
                counts, auth_failed, unavailable = await run_wait(
                    waiter, unique, out, progress=progress
                )
    return _exit_code(counts, auth_failed, unavailable)


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from .demo import run_demo

    return await run_demo(
        exports=args.exports, seed=args.seed, progress=not args.no_progress, out=out
    )


async def _simulate(args: argparse.Namespace) -> int:
    from .simulator import run_simulator

    if args.access_key or args.secret_key:
        credentials = Credentials(args.access_key or "", args.secret_key or "")
    elif os.environ.get("QIANFAN_ACCESS_KEY") or os.environ.get("QIANFAN_SECRET_KEY"):
        credentials = Credentials.from_env()
    else:
        credentials = SIMULATOR_CREDENTIALS
        logger.info(
            "no credentials given: the simulator accepts the documented test pair "
            "QIANFAN_ACCESS_KEY=%s QIANFAN_SECRET_KEY=<see README>",
            credentials.access_key,
        )
    try:
        await run_simulator(
            credentials,
            host=args.host,
            port=args.port,
            exports=args.exports,
            seed=args.seed,
            qps=args.qps,
            faults=args.faults,
            max_seconds=args.max_seconds,
            fail_ratio=args.fail_ratio,
            slow_delay=args.slow_delay,
            retry_after=args.retry_after,
            clock_skew=args.clock_skew,
        )
    except OSError as exc:  # the address is taken or not this machine's
        logger.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return EXIT_FAILED
    return EXIT_OK


async def _dispatch(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    if args.verb == "status":
        return await _status(args, out)
    if args.verb == "wait":
        return await _wait(args, out, stdin)
    if args.verb == "demo":
        return await _demo(args, out)
    return await _simulate(args)


async def _main_async(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    received: list[int] = []

    def on_signal(code: int) -> None:
        if not received:
            received.append(code)
            main_task.cancel()

    installed: list[signal.Signals] = []
    for signum, code in ((signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, code)
            installed.append(signum)
    try:
        return await _dispatch(args, out, stdin)
    except asyncio.CancelledError:
        if received and args.verb == "simulate":
            return EXIT_OK  # Ctrl-C is how the simulator is meant to stop
        if received:
            raise _Interrupted(received[0]) from None
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: Iterable[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    _configure_logging(getattr(args, "verbose", False))
    try:
        return asyncio.run(_main_async(args, sys.stdout, sys.stdin))
    except _Interrupted as interrupted:
        print("qianfan-export-wait: interrupted", file=sys.stderr)
        return interrupted.code
    except KeyboardInterrupt:
        print("qianfan-export-wait: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except UsageError as exc:
        print(f"qianfan-export-wait: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigurationError, ValueError) as exc:
        print(f"qianfan-export-wait: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
