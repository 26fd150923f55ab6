"""Waits that outlive the process, on Redis Streams (the ``redis`` extra).

::

    async with queue_from_url(url, access_key=ak) as queue:
        await queue.submit([96, 97], timeout=3600)        # from any process
        outcome = await queue.result(96)                  # from any process

    async with queue_from_url(url, access_key=ak) as queue, ExportWaiter(client) as waiter:
        async with Worker(queue, waiter):                 # any number of replicas
            ...                                           # until SIGTERM

Ids are kept in a stream whose consumer group gives each to one worker; a worker renews
its claims, adopts those of a worker that stopped renewing, and hands its own back when
it drains. Outcomes are written once and announced on a second stream, which ``result``
blocks on. At-least-once: after a worker's death an id may be polled by two workers for
a moment; never is a second outcome written. See docs/durable.md.
"""

from .queue import API_GENERATIONS, DurableOutcome, DurableQueue, Submitted, queue_from_url
from .worker import Worker, WorkerStats

__all__ = [
    "API_GENERATIONS",
    "DurableOutcome",
    "DurableQueue",
    "Submitted",
    "Worker",
    "WorkerStats",
    "queue_from_url",
]
