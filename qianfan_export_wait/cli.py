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
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from . import __version__
from .client import BASE_URL_ENV
from .console import (
    EXIT_CODES_HELP,
    ORDERS,
    Console,
    DisplayLogHandler,
    ExitCode,
    UsageError,
    run_interruptible,
)
from .console.arguments import OPTION_GROUPS as OPTION_GROUPS
from .console.arguments import _count as _count
from .console.arguments import _Formatter as _Formatter
from .console.arguments import _number as _number
from .console.arguments import _Parser as _Parser
from .console.arguments import _simulate_options as _simulate_options
from .console.durable import DURABLE_VERBS, add_durable_verbs
from .console.export_cmd import add_export_verb, prepare_export
from .console.output import unwritable
from .console.signals import loop_factory
from .console.text import add_format_option, use_text
from .console.verbs import Job as Job
from .console.verbs import _client_options as _client_options
from .console.verbs import _download_folder as _download_folder
from .console.verbs import _prepare_demo as _prepare_demo
from .console.verbs import _prepare_simulate as _prepare_simulate
from .console.verbs import _prepare_status as _prepare_status
from .console.verbs import _prepare_wait as _prepare_wait
from .console.verbs import _session as _session
from .console.verbs import _ssl_context as _ssl_context
from .errors import ConfigurationError
from .simulator import SIMULATOR_CREDENTIALS

__all__ = ["SIMULATOR_CREDENTIALS", "build_parser", "main"]

logger = logging.getLogger("qianfan_export_wait")

_PROG = "qianfan-export-wait"


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
        "api",
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
        "api",
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

    add_export_verb(verbs, _verb)

    simulate = _verb(verbs, "simulate", "run the local Qianfan simulator until Ctrl-C", "log")
    _simulate_options(simulate)
    add_durable_verbs(verbs, _verb, _number, _count)  # worker, submit: waits kept on Redis
    return parser


# ---------------------------------------------------------------- the verbs

_PREPARE: dict[str, Callable[[argparse.Namespace, Console, TextIO], Job]] = {
    "status": _prepare_status,
    "wait": _prepare_wait,
    "demo": _prepare_demo,
    "simulate": _prepare_simulate,
    "export": lambda args, console, stdin: prepare_export(
        args,
        console,
        stdin,
        client_options=_client_options,
        ssl_context=_ssl_context,
        session=_session,
        download_folder=_download_folder,
    ),
    **DURABLE_VERBS,
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
        sys.stdout if args.verb in ("status", "wait", "submit") else None,  # JSON lines
        sys.stderr,
        bar=not (quiet or getattr(args, "no_progress", False)),
        summary=not quiet,
    )
    _configure_logging(args, console)
    if getattr(args, "format", "json") == "text":
        use_text(console, sys.stdout)
    if args.verb in ("status", "wait", "export", "submit"):
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
