"""``qianfan-export-wait export EVAL_ID...``: the whole job on the command line. Waits for
each evaluation, creates its export, waits for it, optionally downloads it; prints one
JSON line per evaluation id at the end, in the order given; exit codes as ``wait``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ..auth import Credentials
from ..client import ExportStatusClient
from ..downloads import Downloader
from ..errors import AuthError, ConfigurationError, ServiceUnavailableError
from ..fleet import limiter_from_url
from ..job import ExportJobResult, create_args_for, run_export_job
from ..waiting import PollPolicy
from .api_options import api_of, check_ids_for_api, log_unknown
from .exits import ExitCode, UsageError, join_fleet
from .inputs import gather_ids
from .records import json_line
from .signals import Interrupt
from .terminal import Console

__all__ = ["add_export_verb", "exit_code_of", "prepare_export"]

logger = logging.getLogger("qianfan_export_wait")

_STORAGES = ("local", "storage", "sysStorage", "BOS")
_HELP = (
    "wait for each evaluation, create its export, wait for it (and download it); one "
    "JSON line per evaluation id on stdout"
)


def add_export_verb(verbs: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the ``export`` verb (``verb`` makes a parser with shared option groups)."""
    parser = verb(verbs, "export", _HELP, "polling", "connection", "api", "display", "log")
    parser.add_argument(
        "ids",
        nargs="+",
        metavar="EVAL_ID",
        help="evaluation id: V1 digits (the id) or a string (ame-...); V2: ame-...",
    )
    job = parser.add_argument_group("the job")
    job.add_argument(
        "--content",
        metavar="LIST",
        help="what to export, comma-separated: prompt,prediction,completion,metrics "
        "(V2 also: system) (default: prompt,prediction,completion,metrics)",
    )
    job.add_argument(
        "--storage",
        metavar="KIND",
        help="where the export goes: local (V2: sysStorage) or storage (V2: BOS), the "
        "latter with --bucket (default: local)",
    )
    job.add_argument("--bucket", metavar="NAME", help="with --storage storage/BOS: the bucket")
    job.add_argument(
        "--no-partly-done",
        action="store_true",
        help="an evaluation that ends PartlyDone counts as failed (default: as done)",
    )
    job.add_argument(
        "--download",
        metavar="DIR",
        help='fetch each Done export\'s file into DIR/<export id>/, verified ("file" or '
        '"download_error" in its line) (default: no download)',
    )
    job.add_argument(
        "--extract", action="store_true", help="with --download: unpack zip files safely"
    )
    job.add_argument(
        "--bos-endpoint",
        metavar="URL",
        help="where storage exports' files come from (default: $QIANFAN_BOS_ENDPOINT, "
        "else https://bj.bcebos.com)",
    )
    job.add_argument(
        "--resume",
        metavar="FILE",
        help="the journal of creates (JSON Lines, fsynced as each create is sent and "
        "answered): read if it exists, appended to; a run killed at any point and run "
        "again with it never creates an export twice (default: no journal)",
    )


def exit_code_of(results: Sequence[ExportJobResult]) -> ExitCode:
    """``wait``'s exit codes for the job's results."""
    errors = [r.error for r in results]
    if any(isinstance(e, AuthError) for e in errors):
        return ExitCode.NOPERM
    if any(isinstance(e, ServiceUnavailableError) for e in errors):
        return ExitCode.UNAVAILABLE
    if any(r.outcome == "timeout" for r in results):
        return ExitCode.TIMEOUT
    if any(r.outcome != "done" or r.download_error is not None for r in results):
        return ExitCode.FAILED
    return ExitCode.OK


def prepare_export(
    args: argparse.Namespace,
    console: Console,
    stdin: TextIO,
    *,
    client_options: Callable[[argparse.Namespace, Credentials], dict[str, Any]],
    ssl_context: Callable[[str | None], ssl.SSLContext | None],
    session: Callable[[ssl.SSLContext | None], aiohttp.ClientSession],
    download_folder: Callable[[str], Path],
) -> Callable[[Interrupt], Any]:
    """Check the command line (``UsageError`` before any request) and return the job."""
    if args.extract and args.download is None:
        raise UsageError("--extract needs --download DIR")
    ids = gather_ids(args.ids, None, stdin)
    api = api_of(args)
    if api == "v2":
        check_ids_for_api(ids, api)
    content = None if args.content is None else [c for c in args.content.split(",") if c]
    if args.storage is not None and args.storage not in _STORAGES:
        raise UsageError(f"--storage {args.storage!r} is not one of {', '.join(_STORAGES)}")
    try:
        make_args = create_args_for(api, content, args.storage, args.bucket)
        for eval_id in ids:
            make_args(eval_id)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    if args.resume is not None:
        try:
            with open(args.resume, "ab"):
                pass
        except OSError as exc:
            raise UsageError(
                f"--resume {args.resume!r} cannot be written: {exc.strerror}"
            ) from None
    credentials = Credentials.from_env()
    options = client_options(args, credentials)
    context = ssl_context(args.ca_bundle)
    policy = PollPolicy(
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        timeout=args.timeout,
        max_unavailable=args.max_unavailable,
        budget=args.budget,
    )
    # A bad Redis URL, or no redis package, is bad usage: found here, before any request.
    fleet = (
        limiter_from_url(args.redis_url, access_key=credentials.access_key, qps=args.qps)
        if args.redis_url
        else None
    )
    if args.download is not None:
        folder = download_folder(args.download)
        Downloader(  # checks the BOS endpoint now
            folder, allow_insecure_http=args.insecure_http, bos_endpoint=args.bos_endpoint
        )

    async def job(interrupt: Interrupt) -> int:
        async with session(context) as http:
            client = ExportStatusClient(credentials, session=http, **options)
            downloader = None
            if args.download is not None:
                downloader = Downloader(
                    folder,
                    credentials=credentials,
                    session=http,  # links are refreshed by the job, inside its limits
                    extract=args.extract,
                    allow_insecure_http=args.insecure_http,
                    bos_endpoint=args.bos_endpoint,
                )
            async with client, contextlib.AsyncExitStack() as stack:
                limiter = await join_fleet(stack, fleet)
                if isinstance(limiter, ExitCode):
                    return limiter
                run = run_export_job(
                    client,
                    ids,
                    api=api,
                    content=content,
                    storage=args.storage,
                    bucket=args.bucket,
                    partly_done_is_done=not args.no_partly_done,
                    policy=policy,
                    qps=None if limiter is not None else args.qps,
                    max_in_flight=args.max_in_flight,
                    downloader=downloader,
                    journal=args.resume,
                    limiter=limiter,  # the fleet's: --qps is its limit
                )
                if downloader is not None:
                    async with downloader:
                        results = await run
                else:
                    results = await run
        for result in results:
            sys.stdout.write(json_line(result.to_dict()) + "\n")
        sys.stdout.flush()
        log_unknown(client.stats.unknown_states)
        if interrupt.code is not None:
            return interrupt.code
        return exit_code_of(results)

    return job
