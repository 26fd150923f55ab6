"""The ``qianfan-export-wait`` command line: argument parsing, and for each verb the one
call into the library and ``console`` that does the work.

Everything the user gives is checked before the event loop starts (ids, files, numbers,
credentials, the endpoint, a CA bundle): a problem there is exit 64 and nothing is sent.
What the verbs print, and every other exit code, is ``console``'s business.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from . import __version__
from ._checks import check_count, check_number
from .auth import Credentials
from .client import BASE_URL_ENV, DEFAULT_BASE_URL, ExportStatusClient
from .console import (
    EXIT_CODES_HELP,
    ORDERS,
    Console,
    DisplayLogHandler,
    ExitCode,
    Interrupt,
    UsageError,
    WaitPlan,
    gather_ids,
    read_earlier_run,
    run_interruptible,
    run_status,
    run_wait,
)
from .console.observability import check_metrics_port, metrics_served
from .console.output import unwritable
from .console.signals import EVENT_LOOPS, loop_factory
from .console.text import add_format_option, use_text
from .download import Downloader, ProgressHook
from .errors import ConfigurationError
from .redis_limit import REDIS_URL_ENV, FleetAuthError, FleetStartError, limiter_from_url
from .simulator import SIMULATOR_CREDENTIALS
from .waiting import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
    ExportWaiter,
    PollPolicy,
)

__all__ = ["SIMULATOR_CREDENTIALS", "build_parser", "main"]

logger = logging.getLogger("qianfan_export_wait")

Job = Callable[[Interrupt], Coroutine[Any, Any, int]]
"""What a verb runs in the event loop; returns the exit code."""

_PROG = "qianfan-export-wait"
_DEFAULT_DOWNLOAD_CONCURRENCY = 4


# ---------------------------------------------------------------- number options


def _number(
    name: str,
    *,
    unit: str = "seconds",
    minimum: float = 0.0,
    inclusive: bool = False,
    maximum: float = float("inf"),
) -> Callable[[str], float]:
    """An argparse ``type``: a number checked by ``check_number``."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        try:
            checked = check_number(
                name, value, unit=unit, minimum=minimum, inclusive=inclusive, maximum=maximum
            )
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        assert checked is not None
        return checked

    return convert


def _count(name: str, *, minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number checked by ``check_count``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text!r}"
            ) from None
        try:
            return check_count(name, value, minimum=minimum, maximum=maximum)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


# ---------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 64, the sysexits code for bad usage
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the exit-code table of the epilog as written."""


def _connection_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"API base URL (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--request-timeout",
        type=_number("--request-timeout"),
        default=10.0,
        metavar="S",
        help="seconds allowed for one request (default: %(default)g)",
    )
    group.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain http:// to a host that is not loopback (default: off)",
    )
    group.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="trust only the CA certificates in this PEM file (default: the system's, "
        "or the file named by $SSL_CERT_FILE)",
    )


def _polling_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--timeout",
        type=_number("--timeout"),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="give up on an export after S seconds (default: %(default)g)",
    )
    group.add_argument(
        "--min-delay",
        type=_number("--min-delay"),
        default=DEFAULT_MIN_DELAY,
        metavar="S",
        help="first wait between polls of one export (default: %(default)g)",
    )
    group.add_argument(
        "--max-delay",
        type=_number("--max-delay"),
        default=DEFAULT_MAX_DELAY,
        metavar="S",
        help="longest wait between polls of one export (default: %(default)g)",
    )
    group.add_argument(
        "--max-in-flight",
        type=_count("--max-in-flight"),
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help="requests in flight at once (default: %(default)d)",
    )
    group.add_argument(
        "--qps",
        type=_number("--qps", unit="requests per second"),
        default=None,
        metavar="Q",
        help="never send more than Q requests per second, and fewer while the server "
        "throttles (default: adapt to the server)",
    )
    group.add_argument(
        "--max-unavailable",
        type=_number("--max-unavailable"),
        default=DEFAULT_MAX_UNAVAILABLE,
        metavar="S",
        help="give up on an export after S seconds with no answer from the service "
        "(connection refused, 5xx, timeouts); exit code 69 (default: %(default)g)",
    )
    group.add_argument(
        "--budget",
        type=_number("--budget", unit="requests per second"),
        default=None,
        metavar="Q",
        help="poll by a round-robin sweep at Q requests per second: each pending export "
        "every pending/Q seconds, never more often than --min-delay (default: a backoff "
        "per export instead)",
    )
    group.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_URL_ENV),
        metavar="URL",
        help="share the rate limit with every process of this account through Redis "
        f"(default: ${REDIS_URL_ENV}, else none; needs the redis extra)",
    )


def _download_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--download",
        metavar="DIR",
        help="fetch each Done export's file into DIR/<export id>/, verified; its line "
        'gains "file" or "download_error" (default: no download)',
    )
    group.add_argument(
        "--extract",
        action="store_true",
        help="with --download: unpack zip files safely beside them (default: off)",
    )
    group.add_argument(
        "--download-concurrency",
        type=_count("--download-concurrency"),
        default=_DEFAULT_DOWNLOAD_CONCURRENCY,
        metavar="N",
        help="with --download: files fetched at once (default: %(default)d)",
    )


def _display_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no live progress bar on stderr (default: a bar when stderr is a terminal)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no bar, no summary, no info logs on stderr; errors still show (default: off)",
    )


def _log_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "-v", "--verbose", action="store_true", help="debug logs on stderr (default: off)"
    )
    group.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="the asyncio event loop: uvloop (installed by the fast extra) or the standard "
        "one (default: %(default)s, uvloop when installed)",
    )


OPTION_GROUPS: dict[str, tuple[str, Callable[[argparse._ArgumentGroup], None]]] = {
    "polling": ("polling", _polling_options),
    "download": ("downloads", _download_options),
    "connection": ("connection", _connection_options),
    "display": ("stderr", _display_options),
    "log": ("logs and event loop", _log_options),
}
"""The option groups verbs share: name -> (heading in --help, adder). A new option for
several verbs goes into one adder."""


def _verb(
    verbs: Any, name: str, summary: str, *groups: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A verb's parser with the shared option ``groups`` (keys of ``OPTION_GROUPS``)."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name, help=summary, description=summary, epilog=epilog, formatter_class=_Formatter
    )
    for group in groups:
        heading, add = OPTION_GROUPS[group]
        add(parser.add_argument_group(heading))
    return parser


_IDS_HELP = "exportID (digits: 1 to 2**63-1, no leading zeros) or exportIDStr (amemt-...)"
_CREDENTIALS_EPILOG = (
    "Credentials come from QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY, the endpoint\n"
    f"from {BASE_URL_ENV}; SSL_CERT_FILE names a PEM file of CA\n"
    "certificates to trust instead of the system's."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = _Parser(
        prog=_PROG,
        description="Wait for Baidu Qianfan model-evaluation result exports.",
        epilog=f"{_CREDENTIALS_EPILOG}\n\n{EXIT_CODES_HELP}",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    status = _verb(
        verbs,
        "status",
        "ask once for the status of each export id",
        "connection",
        "log",
        epilog=f"{_CREDENTIALS_EPILOG}\n\n{EXIT_CODES_HELP}",
    )
    status.add_argument("ids", nargs="+", metavar="ID", help=_IDS_HELP)
    add_format_option(status)

    wait = _verb(
        verbs,
        "wait",
        "wait until every export is Done or Fail; one JSON line per id on stdout",
        "polling",
        "download",
        "connection",
        "display",
        "log",
        epilog=f"{_CREDENTIALS_EPILOG}\n\n{EXIT_CODES_HELP}",
    )
    wait.add_argument("ids", nargs="*", metavar="ID", help=_IDS_HELP)
    add_format_option(wait)
    wait.add_argument(
        "--ids-file",
        metavar="PATH",
        help="also wait for the ids in this file, one a line; - for stdin; UTF-8, "
        "# comments (default: none)",
    )
    wait.add_argument(
        "--resume",
        metavar="FILE",
        help="an earlier run's output: ids it has as done or failed are printed again "
        "without a request, the rest are waited for; with no IDs, its ids are the run's "
        "(default: none)",
    )
    wait.add_argument(
        "--order",
        choices=ORDERS,
        default="input",
        help="print lines in the order of the ids given, or as each export finishes "
        "(default: %(default)s)",
    )
    wait.add_argument(
        "--metrics-port",
        type=_count("--metrics-port", maximum=65535),
        metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics during the run "
        "(needs the metrics extra; default: none)",
    )

    demo = _verb(verbs, "demo", "wait for exports on the built-in simulator", "display", "log")
    demo.add_argument(
        "--exports",
        type=_count("--exports"),
        default=300,
        metavar="N",
        help="exports to simulate (default: %(default)d)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        metavar="S",
        help="seed of the simulator's timeline and faults (default: %(default)d)",
    )

    simulate = _verb(verbs, "simulate", "run the local Qianfan simulator until Ctrl-C", "log")
    _simulate_options(simulate)
    return parser


def _simulate_options(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    simulate.add_argument(
        "--port",
        type=_count("--port", minimum=0, maximum=65535),
        default=8421,
        metavar="P",
        help="port to listen on; 0 picks a free one (default: %(default)d)",
    )
    simulate.add_argument(
        "--exports",
        type=_count("--exports", minimum=0),
        default=100,
        metavar="N",
        help="exports 1..N to serve (default: %(default)d)",
    )
    simulate.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the timeline, the faults and the failing exports (default: %(default)d)",
    )
    simulate.add_argument(
        "--qps",
        type=_number("--qps", unit="requests per second"),
        default=None,
        metavar="Q",
        help="answer code 18 (throttled) beyond Q requests per second (default: no limit)",
    )
    simulate.add_argument(
        "--faults",
        type=_number("--faults", unit="probability", inclusive=True, maximum=1.0),
        default=0.0,
        metavar="F",
        help="share of requests that meet an injected fault: HTTP 500, reset, truncated "
        "JSON, code 336100, slow answer (default: %(default)g)",
    )
    simulate.add_argument(
        "--max-seconds",
        type=_number("--max-seconds", inclusive=True),
        default=30.0,
        metavar="T",
        help="exports finish at seeded times spread over T seconds (default: %(default)g)",
    )
    simulate.add_argument(
        "--fail-ratio",
        type=_number("--fail-ratio", unit="fraction", inclusive=True, maximum=1.0),
        default=0.1,
        metavar="R",
        help="share of exports that end in Fail (default: %(default)g)",
    )
    simulate.add_argument(
        "--slow-delay",
        type=_number("--slow-delay"),
        default=2.0,
        metavar="S",
        help="seconds the slow-response fault waits (default: %(default)g)",
    )
    simulate.add_argument(
        "--retry-after",
        type=_number("--retry-after"),
        default=None,
        metavar="S",
        help="send Retry-After: S with throttled answers (default: none)",
    )
    simulate.add_argument(
        "--clock-skew",
        type=_number("--clock-skew", minimum=-86400.0, inclusive=True, maximum=86400.0),
        default=0.0,
        metavar="S",
        help="shift the simulator's clock by S seconds (default: %(default)g)",
    )
    simulate.add_argument(
        "--api",
        choices=("v1", "v2", "both"),
        default="both",
        help="which generations of Qianfan's API to serve (default: %(default)s)",
    )
    simulate.add_argument(
        "--evaluations",
        type=_count("--evaluations", minimum=0),
        default=0,
        metavar="N",
        help="evaluations to serve, ids from 1000001, on the same timeline (default: %(default)d)",
    )
    simulate.add_argument(
        "--access-key",
        default=None,
        help="the access key to accept (default: $QIANFAN_ACCESS_KEY, else the test pair "
        f"{SIMULATOR_CREDENTIALS.access_key})",
    )
    simulate.add_argument(
        "--secret-key",
        default=None,
        help="the secret key to accept; prefer $QIANFAN_SECRET_KEY, as arguments are "
        "visible to other users (default: $QIANFAN_SECRET_KEY, else the test pair's)",
    )


# ---------------------------------------------------------------- the verbs


def _ssl_context(path: str | None) -> ssl.SSLContext | None:
    if path is None:
        return None
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise UsageError(f"--ca-bundle {path!r} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-bundle {path!r} is not a PEM file of certificates: {exc}") from None


def _session(context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """One session for status requests and downloads (the connection count is the
    client's and the downloader's to bound)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=True if context is None else context),
        raise_for_status=False,
    )


def _client_options(args: argparse.Namespace, credentials: Credentials) -> dict[str, Any]:
    options = {
        "base_url": args.endpoint,
        "request_timeout": args.request_timeout,
        "allow_insecure_http": args.insecure_http,
    }
    ExportStatusClient(credentials, **options)  # checks the endpoint now, sends nothing
    return options


def _prepare_status(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    ids = gather_ids(args.ids, None, stdin)
    credentials = Credentials.from_env()
    options = _client_options(args, credentials)
    context = _ssl_context(args.ca_bundle)

    async def job(interrupt: Interrupt) -> int:
        async with _session(context) as session:
            client = ExportStatusClient(credentials, session=session, **options)
            tally = await run_status(client, ids, console, interrupt)
        return tally.exit_code()

    return job


def _prepare_wait(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    ids = gather_ids(args.ids, args.ids_file, stdin)
    downloading = args.download is not None
    if (args.extract or args.download_concurrency != _DEFAULT_DOWNLOAD_CONCURRENCY) and (
        not downloading
    ):
        raise UsageError("--extract and --download-concurrency need --download DIR")
    folder = _download_folder(args.download) if downloading else None
    earlier = None
    if args.resume is not None:
        earlier = read_earlier_run(args.resume, downloading=downloading, download_folder=folder)
        if not ids:
            ids = earlier.ids
    if not ids:
        raise UsageError("no export ids given (pass IDs, --ids-file PATH or --resume FILE)")
    plan = WaitPlan(ids, order=args.order, earlier=earlier)
    check_metrics_port(args.metrics_port)
    policy = PollPolicy(
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        timeout=args.timeout,
        max_unavailable=args.max_unavailable,
        budget=args.budget,
    )
    credentials = Credentials.from_env()
    # A bad Redis URL, or no redis package, is bad usage: found here, before any request.
    fleet = (
        limiter_from_url(args.redis_url, access_key=credentials.access_key, qps=args.qps)
        if args.redis_url
        else None
    )
    options = _client_options(args, credentials)
    context = _ssl_context(args.ca_bundle)
    if folder is not None:  # checks the storage endpoint ($QIANFAN_BOS_ENDPOINT) now
        Downloader(folder, allow_insecure_http=args.insecure_http)

    async def job(interrupt: Interrupt) -> int:
        async with _session(context) as session:
            client = ExportStatusClient(credentials, session=session, **options)
            factory = None
            if folder is not None:

                def factory(on_progress: ProgressHook) -> Downloader:
                    return Downloader(
                        folder,
                        credentials=credentials,
                        session=session,
                        refresh=client.get_status,
                        max_concurrency=args.download_concurrency,
                        extract=args.extract,
                        allow_insecure_http=args.insecure_http,
                        on_progress=on_progress,
                    )

            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(metrics_served(args.metrics_port))
                limiter = None
                if fleet is not None:
                    try:
                        limiter = await stack.enter_async_context(fleet)
                    except FleetStartError as exc:  # before any request: a wrong URL
                        logger.error("%s", exc)
                        if isinstance(exc, FleetAuthError):
                            return ExitCode.NOPERM
                        return ExitCode.UNAVAILABLE
                waiter = ExportWaiter(
                    client,
                    policy=policy,
                    max_in_flight=args.max_in_flight,
                    qps=args.qps,
                    limiter=limiter,
                )
                async with waiter:
                    tally = await run_wait(waiter, plan, console, interrupt, downloader=factory)
        return tally.exit_code()

    return job


def _download_folder(path: str) -> Path:
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--download {path!r} is not a directory") from None
    except OSError as exc:
        raise UsageError(f"--download {path!r} cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--download {path!r} is not writable")
    return folder


def _prepare_demo(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    from .demo import run_demo

    async def job(interrupt: Interrupt) -> int:
        return await run_demo(
            exports=args.exports, seed=args.seed, console=console, interrupt=interrupt
        )

    return job


def _prepare_simulate(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
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

    async def job(interrupt: Interrupt) -> int:
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
                api=args.api,
                evaluations=args.evaluations,
            )
        except OSError as exc:  # the address is taken or not this machine's
            logger.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
            return ExitCode.FAILED
        except BaseException:
            if interrupt.code is None:
                raise
            return ExitCode.OK  # Ctrl-C is how the simulator is meant to stop
        return ExitCode.OK

    return job


_PREPARE: dict[str, Callable[[argparse.Namespace, Console, TextIO], Job]] = {
    "status": _prepare_status,
    "wait": _prepare_wait,
    "demo": _prepare_demo,
    "simulate": _prepare_simulate,
}


def _configure_logging(args: argparse.Namespace, console: Console) -> None:
    handler = DisplayLogHandler(console.display)
    handler.setFormatter(logging.Formatter(f"{_PROG}: %(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    if getattr(args, "verbose", False):
        logger.setLevel(logging.DEBUG)
    elif getattr(args, "quiet", False):
        logger.setLevel(logging.WARNING)
    else:
        logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Iterable[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    quiet = getattr(args, "quiet", False)
    console = Console(
        sys.stdout if args.verb in ("status", "wait") else None,  # JSON lines: theirs only
        sys.stderr,
        bar=not (quiet or getattr(args, "no_progress", False)),
        summary=not quiet,
    )
    _configure_logging(args, console)
    if getattr(args, "format", "json") == "text":
        use_text(console, sys.stdout)
    if args.verb in ("status", "wait"):
        problem = unwritable(sys.stdout)
        if problem is not None:  # the JSON lines would be lost: say so before any request
            with contextlib.suppress(OSError, ValueError, AttributeError):
                print(f"{_PROG}: error: stdout is not writable: {problem}", file=sys.stderr)
            return ExitCode.IOERR
    try:
        job = _PREPARE[args.verb](args, console, sys.stdin)
        try:
            loop_factory(args.event_loop)
        except ValueError as exc:  # uvloop asked for, not installed
            raise UsageError(str(exc)) from None
    except (UsageError, ConfigurationError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:  # Ctrl-C while reading the ids: nothing was sent
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return ExitCode.SIGINT
    try:
        return run_interruptible(job, loop=args.event_loop)
    except BrokenPipeError:  # stdout closed while the demo printed its table
        _silence_stdout()
        return ExitCode.SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of a closed pipe does
    not print a traceback of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file: nothing will be flushed to a pipe
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
