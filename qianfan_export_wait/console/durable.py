"""The ``worker`` and ``submit`` verbs: waits kept on Redis (``qianfan_export_wait.durable``).

``worker`` waits for the ids of the account's queue until SIGTERM, then hands back the ids
it holds; ``submit`` queues ids and, with ``--wait``, prints one ``wait``-format line per
id as its outcome is written, with ``wait``'s exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import aiohttp

from ..auth import ACCESS_KEY_ENV, Credentials
from ..client import ExportStatusClient
from ..durable import DurableQueue, Submitted, Worker, queue_from_url
from ..errors import ConfigurationError
from ..fleet.setup import limiter_from_url
from ..fleet.urls import REDIS_URL_ENV
from ..models import ExportId
from ..waiting import (
    DEFAULT_TIMEOUT,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
)
from .arguments import add_polling_options
from .exits import ExitCode, UsageError, join_fleet
from .inputs import gather_ids
from .records import json_line, outcome_record
from .signals import Interrupt
from .tally import Tally
from .terminal import Console

__all__ = ["DURABLE_VERBS", "add_durable_verbs"]

logger = logging.getLogger("qianfan_export_wait")

SUBMIT_PATIENCE = 10.0
"""Seconds ``submit`` keeps trying while Redis does not answer, before it exits 69."""

Job = Callable[[Interrupt], Coroutine[Any, Any, int]]
Prepare = Callable[[argparse.Namespace, Console, TextIO], Job]
_MakeVerb = Callable[..., argparse.ArgumentParser]
_Number = Callable[..., Callable[[str], float]]


def add_durable_verbs(verbs: Any, make_verb: _MakeVerb, number: _Number, count: _Number) -> None:
    """Add ``worker`` and ``submit`` to the command line's ``verbs`` (``make_verb``,
    ``number`` and ``count`` are ``cli``'s own helpers)."""
    redis_url: dict[str, Any] = {
        "default": os.environ.get(REDIS_URL_ENV),
        "metavar": "URL",
        "help": f"the Redis that keeps the queue (default: ${REDIS_URL_ENV}; required)",
    }
    worker = make_verb(
        verbs,
        "worker",
        "wait for the ids submitted to the account's queue on Redis, until SIGTERM",
        "connection",
        "log",
    )
    worker.add_argument("--redis-url", **redis_url)
    add_polling_options(
        worker,
        ("--qps", "--min-delay", "--max-delay", "--max-in-flight", "--max-unavailable"),
        helps={
            "--qps": "the fleet's rate limit, shared through the same Redis (default: adapt)",
            "--max-unavailable": "an export with no answer from the service for S seconds "
            "ends as an error (default: %(default)g)",
        },
    )
    worker.add_argument(
        "--capacity",
        type=count("--capacity"),
        default=5000,
        metavar="N",
        help="ids this worker holds at once (default: %(default)d)",
    )
    worker.add_argument(
        "--claim-idle",
        type=number("--claim-idle"),
        default=30.0,
        metavar="S",
        help="a worker that has not renewed its claims for S seconds is taken for dead "
        "and its ids are adopted (default: %(default)g)",
    )
    worker.add_argument(
        "--adopt-every",
        type=number("--adopt-every"),
        default=1.0,
        metavar="S",
        help="look for ids to adopt every S seconds (default: %(default)g)",
    )

    submit = make_verb(
        verbs,
        "submit",
        "queue export ids for the workers; with --wait, one JSON line per id as it ends",
        "display",
        "log",
    )
    submit.add_argument("ids", nargs="*", metavar="ID", help="exportID or exportIDStr")
    submit.add_argument(
        "--ids-file",
        metavar="PATH",
        help="also the ids in this file, one a line; - for stdin (default: none)",
    )
    submit.add_argument("--redis-url", **redis_url)
    submit.add_argument(
        "--timeout",
        type=number("--timeout"),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="each id's deadline, S seconds from now; an id already queued keeps its own "
        "(default: %(default)g)",
    )
    submit.add_argument(
        "--api",
        choices=("v1", "v2"),
        default="v1",
        help="the API generation the workers wait with (default: %(default)s)",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="print each id's outcome as it is written (the wait command's lines and exit "
        "codes); the ids stay queued if this process ends (default: queue and exit)",
    )


def _redis_url(args: argparse.Namespace) -> str:
    if not args.redis_url:
        raise UsageError(f"{args.verb} needs --redis-url URL or ${REDIS_URL_ENV}")
    return str(args.redis_url)


def _prepare_worker(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    url = _redis_url(args)
    credentials = Credentials.from_env()
    policy = PollPolicy(
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        timeout=None,
        max_unavailable=args.max_unavailable,
    )
    if args.adopt_every > args.claim_idle:
        raise UsageError(
            f"--adopt-every ({args.adopt_every:g}) must be <= --claim-idle ({args.claim_idle:g})"
        )
    queue = queue_from_url(url, access_key=credentials.access_key)
    fleet = limiter_from_url(url, access_key=credentials.access_key, qps=args.qps)
    options = {
        "base_url": args.endpoint,
        "request_timeout": args.request_timeout,
        "allow_insecure_http": args.insecure_http,
    }
    ExportStatusClient(credentials, **options)  # checks the endpoint now, sends nothing
    context = _ssl_context(args.ca_bundle)

    async def job(interrupt: Interrupt) -> int:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(queue.aclose)
            limiter = await join_fleet(stack, fleet)
            if isinstance(limiter, ExitCode):
                return limiter
            session = await stack.enter_async_context(_session(context))
            client = ExportStatusClient(credentials, session=session, **options)
            waiter = await stack.enter_async_context(
                ExportWaiter(
                    client, policy=policy, max_in_flight=args.max_in_flight, limiter=limiter
                )
            )
            worker = Worker(
                queue,
                waiter,
                capacity=args.capacity,
                claim_idle=args.claim_idle,
                adopt_every=args.adopt_every,
            )
            try:
                try:
                    await worker.start()
                except queue.errors as exc:
                    logger.error(
                        "Redis at %s stopped answering (%s)", queue.name, type(exc).__name__
                    )
                    return ExitCode.UNAVAILABLE
                logger.info("durable worker %s: waiting for ids on %s", worker.name, queue.name)
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if interrupt.code is None:
                    raise
                interrupt.acknowledge()  # drain below, with Redis calls that must not be cut
            finally:
                await worker.aclose()
            stats = worker.stats
            logger.info(
                "durable worker %s: stopped by %s; %d outcomes written, %d ids handed back",
                worker.name,
                interrupt.code.name if interrupt.code is not None else "?",
                stats.written,
                stats.released,
            )
        return ExitCode.OK

    return job


def _prepare_submit(args: argparse.Namespace, console: Console, stdin: TextIO) -> Job:
    url = _redis_url(args)
    ids = gather_ids(args.ids, args.ids_file, stdin)
    if not ids:
        raise UsageError("no export ids given (pass IDs or --ids-file PATH)")
    access_key = os.environ.get(ACCESS_KEY_ENV, "").strip()
    if not access_key:
        raise ConfigurationError(
            f"{ACCESS_KEY_ENV} not set or empty: the queue is the account's (no secret key "
            "is needed to submit)"
        )
    queue = queue_from_url(url, access_key=access_key)

    async def job(interrupt: Interrupt) -> int:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(queue.aclose)
            try:
                answers = await _submit_patiently(queue, ids, args.timeout, args.api)
            except asyncio.CancelledError:
                if interrupt.code is None:
                    raise
                interrupt.acknowledge()  # stopped while submitting: some ids may be queued
                return (
                    await _print_pending(ids, console, interrupt) if args.wait else interrupt.code
                )
            if answers is None:
                return ExitCode.UNAVAILABLE
            counts = {"queued": 0, "joined": 0, "finished": 0}
            for answer in answers:
                counts[answer.status] = counts.get(answer.status, 0) + 1
            logger.info(
                "submitted %d ids: %d queued, %d joined a wait already queued, %d already finished",
                len(answers),
                counts["queued"],
                counts["joined"],
                counts["finished"],
            )
            if not args.wait:
                return ExitCode.OK
            return await _print_outcomes(queue, ids, console, interrupt)

    return job


async def _submit_patiently(
    queue: DurableQueue, ids: list[ExportId], timeout: float, api: str
) -> list[Submitted] | None:
    """Submit, trying again for ``SUBMIT_PATIENCE`` seconds while Redis does not answer (a
    restart); ``None`` (logged) if it never did. Submitting is idempotent: a retry after
    a submit that landed joins it."""
    deadline = time.monotonic() + SUBMIT_PATIENCE
    while True:
        try:
            return await queue.submit(ids, timeout=timeout, api=api)
        except queue.errors as exc:
            if time.monotonic() >= deadline:
                logger.error(
                    "Redis at %s cannot be reached (%s); check the URL's host and port",
                    queue.name,
                    type(exc).__name__,
                )
                return None
            await asyncio.sleep(0.5)


async def _print_outcomes(
    queue: DurableQueue, ids: list[ExportId], console: Console, interrupt: Interrupt
) -> int:
    tally = Tally(total=len(ids))
    lines = console.lines
    lines.start()
    unseen = set(ids)
    try:
        async for outcome in queue.results(ids):
            unseen.discard(outcome.export_id)
            tally.count(outcome.kind)
            tally.auth_failed = tally.auth_failed or outcome.auth_failed
            tally.unavailable = tally.unavailable or outcome.unavailable
            lines.write(json_line(outcome.record))
            if lines.backlog >= lines.high_water:
                await lines.room()
    except asyncio.CancelledError:
        if interrupt.code is None:
            raise
        interrupt.acknowledge()
        for export_id in ids:
            if export_id in unseen:
                tally.count(OutcomeKind.PENDING)
                lines.write(json_line(outcome_record(export_id, "pending", None, None, 0, 0.0)))
        tally.stopped = interrupt.code
    await lines.drain()
    lines.close()
    return int(tally.exit_code())


async def _print_pending(ids: list[ExportId], console: Console, interrupt: Interrupt) -> int:
    """Interrupted before any outcome: a ``pending`` line for every id, as ``wait`` does."""
    lines = console.lines
    lines.start()
    for export_id in ids:
        lines.write(json_line(outcome_record(export_id, "pending", None, None, 0, 0.0)))
    await lines.drain()
    lines.close()
    assert interrupt.code is not None
    return int(interrupt.code)


def _ssl_context(path: str | None) -> ssl.SSLContext | None:
    if path is None:
        return None
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-bundle {path!r} is not a readable PEM file: {exc}") from None


def _session(context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=True if context is None else context),
        raise_for_status=False,
    )


DURABLE_VERBS: dict[str, Prepare] = {"worker": _prepare_worker, "submit": _prepare_submit}
"""Each verb's preparation, for ``cli``'s table."""
