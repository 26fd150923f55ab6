"""The command line's options: the number and count parsers, the option groups the verbs
share (``OPTION_GROUPS``) and the simulator's options."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._checks import check_count, check_number
from ..client import BASE_URL_ENV, DEFAULT_BASE_URL
from ..errors import ConfigurationError
from ..fleet import REDIS_URL_ENV
from ..simulator import SIMULATOR_CREDENTIALS
from ..waiting import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
)
from . import (
    ExitCode,
)
from .api_options import add_api_options
from .signals import EVENT_LOOPS

__all__ = ["OPTION_GROUPS", "POLLING_OPTIONS", "add_polling_options"]

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


POLLING_OPTIONS = (
    "--timeout",
    "--min-delay",
    "--max-delay",
    "--max-in-flight",
    "--qps",
    "--max-unavailable",
    "--budget",
    "--redis-url",
)
"""The polling options, in the order of ``wait --help``."""


def _polling_specs() -> dict[str, dict[str, Any]]:
    return {
        "--timeout": {
            "type": _number("--timeout"),
            "default": DEFAULT_TIMEOUT,
            "metavar": "S",
            "help": "give up on an export after S seconds (default: %(default)g)",
        },
        "--min-delay": {
            "type": _number("--min-delay"),
            "default": DEFAULT_MIN_DELAY,
            "metavar": "S",
            "help": "first wait between polls of one export (default: %(default)g)",
        },
        "--max-delay": {
            "type": _number("--max-delay"),
            "default": DEFAULT_MAX_DELAY,
            "metavar": "S",
            "help": "longest wait between polls of one export (default: %(default)g)",
        },
        "--max-in-flight": {
            "type": _count("--max-in-flight"),
            "default": DEFAULT_MAX_IN_FLIGHT,
            "metavar": "N",
            "help": "requests in flight at once (default: %(default)d)",
        },
        "--qps": {
            "type": _number("--qps", unit="requests per second"),
            "default": None,
            "metavar": "Q",
            "help": "never send more than Q requests per second, and fewer while the server "
            "throttles (default: adapt to the server)",
        },
        "--max-unavailable": {
            "type": _number("--max-unavailable"),
            "default": DEFAULT_MAX_UNAVAILABLE,
            "metavar": "S",
            "help": "give up on an export after S seconds with no answer from the service "
            "(connection refused, 5xx, timeouts); exit code 69 (default: %(default)g)",
        },
        "--budget": {
            "type": _number("--budget", unit="requests per second"),
            "default": None,
            "metavar": "Q",
            "help": "poll by a round-robin sweep at Q requests per second: each pending "
            "export every pending/Q seconds, never more often than --min-delay (default: a "
            "backoff per export instead)",
        },
        "--redis-url": {
            "default": os.environ.get(REDIS_URL_ENV),
            "metavar": "URL",
            "help": "share the rate limit with every process of this account through Redis "
            f"(default: ${REDIS_URL_ENV}, else none; needs the redis extra)",
        },
    }


def add_polling_options(
    group: argparse.ArgumentParser | argparse._ArgumentGroup,
    names: Sequence[str] = POLLING_OPTIONS,
    *,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add the polling options ``names`` to ``group`` in that order; ``helps`` gives some
    of them a help text of their own (their type, default and meaning stay the same)."""
    specs = _polling_specs()
    for name in names:
        spec = specs[name]
        if helps is not None and name in helps:
            spec["help"] = helps[name]
        group.add_argument(name, **spec)


def _polling_options(group: argparse._ArgumentGroup) -> None:
    add_polling_options(group)


def _download_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--download",
        metavar="DIR",
        help="fetch each Done export's file into DIR/<export id>/, verified; its line "
        'gains "file" or "download_error" (default: no download)',
    )
    group.add_argument(
        "--bos-endpoint",
        metavar="URL",
        help="where storage exports' files come from (default: $QIANFAN_BOS_ENDPOINT, "
        "else https://bj.bcebos.com; the simulator's banner names its own)",
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
    "api": ("API generation", add_api_options),
    "display": ("stderr", _display_options),
    "log": ("logs and event loop", _log_options),
}
"""The option groups verbs share: name -> (heading in --help, adder). A new option for
several verbs goes into one adder."""


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
