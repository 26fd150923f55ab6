"""The command line's exit codes (sysexits-style), ``UsageError``, the one exit 64, and
``join_fleet``: joining ``--redis-url``'s fleet, or the exit code (69, 77) saying why not."""

from __future__ import annotations

import contextlib
import enum
import logging
from typing import TYPE_CHECKING

from ..fleet.urls import FleetAuthError, FleetStartError

if TYPE_CHECKING:
    from ..fleet.limiter import RedisRateLimiter

__all__ = ["EXIT_CODES_HELP", "ExitCode", "UsageError", "join_fleet"]

logger = logging.getLogger("qianfan_export_wait")


class ExitCode(enum.IntEnum):
    """What the exit status of ``qianfan-export-wait`` means."""

    OK = 0
    FAILED = 1
    TIMEOUT = 2
    USAGE = 64
    UNAVAILABLE = 69
    IOERR = 74
    NOPERM = 77
    SIGINT = 130
    SIGPIPE = 141
    SIGTERM = 143


async def join_fleet(
    stack: contextlib.AsyncExitStack, fleet: RedisRateLimiter | None
) -> RedisRateLimiter | ExitCode | None:
    """Start ``--redis-url``'s fleet limiter inside ``stack`` (``None`` without one); when
    it cannot join, log why and return the exit code: 77 when Redis refused the
    credentials, else 69."""
    if fleet is None:
        return None
    try:
        return await stack.enter_async_context(fleet)
    except FleetStartError as error:  # before any request: a wrong URL or password
        logger.error("%s", error)
        return ExitCode.NOPERM if isinstance(error, FleetAuthError) else ExitCode.UNAVAILABLE


EXIT_CODES_HELP = """\
exit codes:
  0    every export Done (with --download: and every file in place)
  1    some export Fail or error, or a download failed; none timed out
  2    some export timed out
  64   bad usage: an id, an option, a file or a credential (nothing was sent)
  69   gave up: the service stayed unavailable for --max-unavailable seconds;
       or --redis-url's Redis cannot be reached at start
  74   stdout could not be written (e.g. the disk is full)
  77   authentication or TLS failure; or --redis-url's Redis refuses its password
  130  interrupted by SIGINT (Ctrl-C): every id still gets its line
  141  stdout was closed by its reader (e.g. piped into head): the run ends quietly
  143  interrupted by SIGTERM: every id still gets its line"""
"""The table ``wait --help`` shows (and docs/cli.md repeats)."""


class UsageError(Exception):
    """Bad input from the user (an id, an option, a file), found before any request is
    sent: reported with exit code 64."""
