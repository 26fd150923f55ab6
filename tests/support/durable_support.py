"""Helpers for the durable queue's tests: a queue on the test's redis-server, a worker
wired to the in-process simulator, and a bound for conditions that take real time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis_support import RedisServer

from qianfan_export_wait.durable import DurableQueue, Worker, queue_from_url
from qianfan_export_wait.testing import SimulatedQianfan, fast_policy
from qianfan_export_wait.waiting import ExportWaiter

KEY = "qianfan-export-wait:{durable-test}"


def make_queue(server: RedisServer, **options: Any) -> DurableQueue:
    """A queue with its own client on ``server`` (short blocking reads)."""
    options.setdefault("key", KEY)
    options.setdefault("block", 0.5)
    return queue_from_url(server.url, **options)


@contextlib.asynccontextmanager
async def running_worker(
    server: RedisServer, fake: SimulatedQianfan, **options: Any
) -> AsyncIterator[Worker]:
    """A started worker with its own queue object, client and waiter (as another process
    would have); drained on the way out."""
    options.setdefault("claim_idle", 1.0)
    options.setdefault("adopt_every", 0.2)
    async with (
        make_queue(server) as queue,
        fake.client() as client,
        ExportWaiter(client, policy=fast_policy(timeout=None)) as waiter,
        Worker(queue, waiter, **options) as worker,
    ):
        yield worker


async def until(condition: Callable[[], object], seconds: float = 15.0) -> None:
    """Wait until ``condition()`` is true; fail after ``seconds`` (a bound, not a figure)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def kill_abruptly(worker: Worker) -> None:
    """End a worker as ``kill -9`` would: its tasks stop, nothing is handed back."""
    worker._closed = True
    for task in worker._loops:
        task.cancel()
    for held in worker._held.values():
        if held.task is not None:
            held.task.cancel()
