"""What each verb of the command line runs: its arguments checked and turned into a
``Job`` before any request, the client, the session and the downloader set up."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ..auth import Credentials
from ..client import ExportStatusClient
from ..downloads import Downloader, ProgressHook
from ..fleet import limiter_from_url
from ..simulator import SIMULATOR_CREDENTIALS
from ..waiting import (
    ExportWaiter,
    PollPolicy,
)
from . import (
    Console,
    ExitCode,
    Interrupt,
    UsageError,
    WaitPlan,
    gather_ids,
    read_earlier_run,
    run_status,
    run_wait,
)
from .api_options import api_client_options, api_of, check_ids_for_api, log_unknown
from .arguments import _DEFAULT_DOWNLOAD_CONCURRENCY
from .exits import join_fleet
from .observability import check_metrics_port, metrics_served

__all__ = ["Job"]

logger = logging.getLogger("qianfan_export_wait")

Job = Callable[[Interrupt], Coroutine[Any, Any, int]]
"""What a verb runs in the event loop; returns the exit code."""


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
        **api_client_options(args),
    }
    ExportStatusClient(credentials, **options)  # checks the endpoint now, sends nothing
    return options


def _prepare_status(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    ids = gather_ids(args.ids, None, stdin)
    check_ids_for_api(ids, api_of(args))
    credentials = Credentials.from_env()
    options = _client_options(args, credentials)
    context = _ssl_context(args.ca_bundle)

    async def job(interrupt: Interrupt) -> int:
        async with _session(context) as session:
            client = ExportStatusClient(credentials, session=session, **options)
            tally = await run_status(client, ids, console, interrupt)
        log_unknown(client.stats.unknown_states)
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
    check_ids_for_api(ids, api_of(args))
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
        Downloader(folder, allow_insecure_http=args.insecure_http, bos_endpoint=args.bos_endpoint)

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
                        refresh=waiter.refresh,  # the waiter below: inside its limits
                        max_concurrency=args.download_concurrency,
                        extract=args.extract,
                        allow_insecure_http=args.insecure_http,
                        bos_endpoint=args.bos_endpoint,
                        on_progress=on_progress,
                    )

            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(metrics_served(args.metrics_port))
                limiter = await join_fleet(stack, fleet)
                if isinstance(limiter, ExitCode):
                    return limiter
                waiter = ExportWaiter(
                    client,
                    policy=policy,
                    max_in_flight=args.max_in_flight,
                    qps=args.qps,
                    limiter=limiter,
                )
                async with waiter:
                    tally = await run_wait(waiter, plan, console, interrupt, downloader=factory)
        log_unknown(client.stats.unknown_states)
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
    from ..demo import run_demo

    async def job(interrupt: Interrupt) -> int:
        return await run_demo(
            exports=args.exports, seed=args.seed, console=console, interrupt=interrupt
        )

    return job


def _prepare_simulate(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    from ..simulator import run_simulator

    if args.access_key or args.secret_key:
        credentials = Credentials(args.access_key or "", args.secret_key or "")
    elif os.environ.get("QIANFAN_ACCESS_KEY") or os.environ.get("QIANFAN_SECRET_KEY"):
        credentials = Credentials.from_env()
    else:
        credentials = SIMULATOR_CREDENTIALS
        logger.info(
            "no credentials given: the simulator accepts the documented test pair "
            "QIANFAN_ACCESS_KEY=%s QIANFAN_SECRET_KEY=<see docs/testing.md>",
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
