"""``Worker``: claims ids from a ``DurableQueue`` and waits for them through a local
``ExportWaiter``, so batching, coalescing, the fleet limiter and deadlines all apply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._checks import check_count, check_number
from ..errors import AuthError, ConfigurationError
from ..jsonl import json_line, outcome_record, record_for
from ..models import ExportId
from ..waiting.outcomes import ExportOutcome
from ..waiting.waiter import ExportWaiter
from ._scripts import (
    GROUP,
    REFRESH_SCRIPT,
    RELEASE_SCRIPT,
    RELEASED_CONSUMER,
    decode_id,
)
from .queue import DurableQueue, _text, raise_if_cancelled

__all__ = ["Worker", "WorkerStats"]

logger = logging.getLogger("qianfan_export_wait")

_RELEASED_IDLE_MS = str(10**12)  # idle longer than any claim time: adopted at once
_CHUNK = 500
_RETRY_PAUSE = 0.5


@dataclass(slots=True)
class WorkerStats:
    """Counts over a worker's life: ids ``claimed`` new, ``adopted`` from a dead or
    draining worker, outcomes ``written`` and ``already_written`` (another worker's stood),
    claims ``lost`` to another worker, ids ``requeued`` after Redis forgot them, and ids
    ``released`` when it drained; ``held`` is what it waits for now."""

    claimed: int = 0
    adopted: int = 0
    written: int = 0
    already_written: int = 0
    lost: int = 0
    requeued: int = 0
    released: int = 0
    held: int = 0


@dataclass(slots=True)
class _Held:
    export_id: ExportId
    entry: str
    api: str
    deadline: str
    task: asyncio.Task[None] | None = None


class Worker:
    """One process's share of the waiting: ``async with Worker(queue, waiter):``.

    Claims at most ``capacity`` ids at once through the queue's consumer group and feeds
    each into ``waiter`` (``waiters`` maps other API generations to their waiters) with
    the time left to its deadline. Renews its claims every ``claim_idle / 3`` seconds;
    adopts ids whose claim went unrenewed for ``claim_idle`` seconds (a dead worker's),
    looking every ``adopt_every`` seconds, with their original deadlines. Writes each
    outcome once (the first writer wins). Leaving the block (or ``aclose``, e.g. on
    SIGTERM) writes what it knows and hands every other id back at once.
    """

    def __init__(
        self,
        queue: DurableQueue,
        waiter: ExportWaiter,
        *,
        waiters: Mapping[str, ExportWaiter] | None = None,
        capacity: int = 5_000,
        claim_idle: float = 30.0,
        adopt_every: float = 1.0,
        name: str | None = None,
    ) -> None:
        check_count("capacity", capacity)
        check_number("claim_idle", claim_idle)
        check_number("adopt_every", adopt_every)
        if adopt_every > claim_idle:
            raise ConfigurationError(
                f"adopt_every ({adopt_every}) must be <= claim_idle ({claim_idle})"
            )
        self.queue = queue
        self.waiters: dict[str, ExportWaiter] = {"v1": waiter, **(waiters or {})}
        self.capacity = capacity
        self.claim_idle = float(claim_idle)
        self.adopt_every = float(adopt_every)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stats = WorkerStats()
        redis = queue.redis
        self._redis = redis
        self._refresh = redis.register_script(REFRESH_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._held: dict[str, _Held] = {}
        self._finished: list[tuple[str, str, str]] = []
        self._discarded: list[str] = []
        self._handback: list[str] = []
        self._refused: set[str] = set()  # entries of an API without a waiter, warned of
        self._finish_wanted = asyncio.Event()
        self._room = asyncio.Event()
        self._clock_offset = 0.0  # Redis time minus this host's
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Worker {self.name} held={len(self._held)}>"

    # ------------------------------------------------------------------ life

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Join the consumer group and start claiming."""
        if self._started:
            return
        self._started = True
        await self._renew([])  # creates the group; reads Redis's clock
        self._loops = [
            asyncio.create_task(loop(), name=f"durable {loop.__name__}")
            for loop in (self._claim_loop, self._adopt_loop, self._refresh_loop, self._finish_loop)
        ]
        for task in self._loops:
            task.add_done_callback(_log_crash)

    async def aclose(self) -> None:
        """Drain: stop claiming, write the outcomes known, hand every other id back."""
        if self._closed:
            return
        self._closed = True
        finisher = self._loops[-1] if self._loops else None
        for task in self._loops[:-1]:
            task.cancel()
        await asyncio.gather(*self._loops[:-1], return_exceptions=True)
        held = list(self._held.values())
        following = [item.task for item in held if item.task is not None]
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
        if finisher is not None:
            finisher.cancel()
            await asyncio.gather(finisher, return_exceptions=True)
        for _ in range(3):  # outcomes known must not be lost to a passing error
            if not self._finished:
                break
            try:
                await self._write_finished()
            except self.queue.errors:
                await asyncio.sleep(_RETRY_PAUSE)
        entries = [item.entry for item in self._held.values()]
        try:
            self.stats.released += await self._hand_back(entries)
        except self.queue.errors as exc:
            logger.warning(
                "durable worker %s: could not hand back %d ids (%s); they are adopted after %g s",
                self.name,
                len(entries),
                type(exc).__name__,
                self.claim_idle,
            )
        self._held.clear()
        self.stats.held = 0

    async def _hand_back(self, entries: Sequence[str]) -> int:
        """Give ``entries`` to the released consumer, idle enough to be adopted at once."""
        count = 0
        for start in range(0, len(entries), _CHUNK):
            released = await self._release(
                keys=[self.queue.keys.ids],
                args=[
                    GROUP,
                    self.name,
                    RELEASED_CONSUMER,
                    _RELEASED_IDLE_MS,
                    *entries[start : start + _CHUNK],
                ],
            )
            count += int(released)
        return count

    async def run(self) -> None:
        """Work until cancelled (then drain)."""
        async with self:
            await asyncio.Event().wait()

    # ------------------------------------------------------------------ taking ids

    def _take(self, entry: str, fields: Mapping[bytes, bytes], *, adopted: bool) -> None:
        text = _text(fields.get(b"id", b""))
        api = _text(fields.get(b"api", b"v1"))
        deadline = _text(fields.get(b"deadline", b""))
        try:
            export_id = decode_id(text)
        except ValueError:
            logger.error("durable worker %s: entry %s has no valid id; dropped", self.name, entry)
            self._discarded.append(entry)
            self._finish_wanted.set()
            return
        known = self._held.get(text)
        if known is not None:
            known.entry = entry  # queued again while held (Redis forgot it): the newer entry
            return
        waiter = self.waiters.get(api)
        if waiter is None:
            if entry not in self._refused:
                logger.warning(
                    "durable worker %s: no waiter for api %r; export %r left for another worker",
                    self.name,
                    api,
                    export_id,
                )
            self._refused.add(entry)
            self._handback.append(entry)
            self._finish_wanted.set()
            return
        if adopted:
            self.stats.adopted += 1
        else:
            self.stats.claimed += 1
        held = _Held(export_id, entry, api, deadline)
        self._held[text] = held
        self.stats.held = len(self._held)
        left = None if not deadline else float(deadline) - (time.time() + self._clock_offset)
        if left is not None and left <= 0:
            outcome = outcome_record(export_id, "timeout", None, None, 0, 0.0)
            self._done(text, held, outcome, auth_failed=False, unavailable=False)
            return
        handle = waiter.submit(export_id, timeout=left)
        held.task = asyncio.ensure_future(self._follow(text, held, handle))

    async def _follow(self, text: str, held: _Held, handle: Any) -> None:
        try:
            outcome: ExportOutcome = await handle
        except Exception as exc:  # the waiter closed: someone else takes the id
            logger.debug("durable worker %s: %r not waited for: %r", self.name, text, exc)
            return
        self._done(
            text,
            held,
            record_for(outcome),
            auth_failed=isinstance(outcome.error, AuthError),
            unavailable=outcome.unavailable,
        )

    def _done(
        self,
        text: str,
        held: _Held,
        record: dict[str, Any],
        *,
        auth_failed: bool,
        unavailable: bool,
    ) -> None:
        payload = {
            "record": record,
            "api": held.api,
            "auth_failed": auth_failed,
            "unavailable": unavailable,
            "worker": self.name,
        }
        held.task = None
        self._finished.append((text, held.entry, json_line(payload)))
        self._finish_wanted.set()

    # ------------------------------------------------------------------ loops

    async def _claim_loop(self) -> None:
        redis, keys = self._redis, self.queue.keys
        while True:
            raise_if_cancelled()
            room = self.capacity - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                reply: Any = await redis.xreadgroup(
                    GROUP,
                    self.name,
                    {keys.ids: ">"},
                    count=min(room, _CHUNK),
                    block=round(self.queue.block * 1000),
                )
                raise_if_cancelled()  # a cancellation redis-py lost in the blocking read
            except self.queue.errors as exc:
                await self._trouble("claim", exc)
                continue
            for _, entries in reply or ():
                for entry, fields in entries:
                    self._take(_text(entry), fields, adopted=False)

    async def _adopt_loop(self) -> None:
        redis, keys = self._redis, self.queue.keys
        idle_ms = round(self.claim_idle * 1000)
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.adopt_every)
            cursor = "0-0"
            try:
                while self.capacity > len(self._held):
                    reply: Any = await redis.xautoclaim(
                        keys.ids,
                        GROUP,
                        self.name,
                        idle_ms,
                        start_id=cursor,
                        # Redis looks at up to ten times COUNT pending entries per call.
                        count=min(self.capacity - len(self._held), 1000),
                    )
                    cursor = _text(reply[0])
                    for entry, fields in reply[1]:
                        if fields:
                            self._take(_text(entry), fields, adopted=True)
                    if cursor == "0-0":
                        break
            except self.queue.errors as exc:
                await self._trouble("adopt", exc)

    async def _refresh_loop(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.claim_idle / 3)
            try:
                await self._renew(list(self._held))
            except self.queue.errors as exc:
                await self._trouble("renew", exc)

    async def _renew(self, texts: Sequence[str]) -> None:
        """Renew the claims on ``texts``; drop the ids another worker holds or finished."""
        keys = self.queue.keys
        chunks = [texts[start : start + _CHUNK] for start in range(0, len(texts), _CHUNK)] or [[]]
        for chunk in chunks:
            items = [(text, self._held[text]) for text in chunk if text in self._held]
            args = [GROUP, self.name]
            for text, held in items:
                args += [text, held.entry, held.api, held.deadline]
            reply = await self._refresh(
                keys=[keys.ids, keys.jobs, *(keys.outcome(text) for text, _ in items)], args=args
            )
            self._clock_offset = float(_text(reply[-1])) - time.time()
            for (text, held), verdict in zip(items, reply[:-1], strict=True):
                verdict = _text(verdict)
                if verdict == "kept" or self._held.get(text) is not held:
                    continue
                if verdict == "lost":
                    self.stats.lost += 1
                elif verdict == "requeued":
                    self.stats.requeued += 1
                self._drop(text)

    def _drop(self, text: str) -> None:
        held = self._held.pop(text, None)
        self.stats.held = len(self._held)
        self._room.set()
        if held is not None and held.task is not None:
            held.task.cancel()

    async def _finish_loop(self) -> None:
        while True:
            raise_if_cancelled()
            await self._finish_wanted.wait()
            self._finish_wanted.clear()
            try:
                await self._write_finished()
            except self.queue.errors as exc:
                self._finish_wanted.set()
                await self._trouble("write outcomes", exc)

    async def _write_finished(self) -> None:
        if self._handback:
            entries = self._handback[:]
            await self._hand_back(entries)
            del self._handback[: len(entries)]
        if self._discarded:
            entries = self._discarded[:]
            await self._redis.xack(self.queue.keys.ids, GROUP, *entries)
            await self._redis.xdel(self.queue.keys.ids, *entries)
            del self._discarded[: len(entries)]
        while self._finished:
            batch = self._finished[:_CHUNK]
            written = await self.queue.finish(batch)
            del self._finished[: len(batch)]
            for (text, entry, _), wrote in zip(batch, written, strict=True):
                if wrote:
                    self.stats.written += 1
                else:
                    self.stats.already_written += 1
                held = self._held.get(text)
                if held is not None and held.entry == entry:
                    self._drop(text)

    async def _trouble(self, what: str, exc: BaseException) -> None:
        from redis.exceptions import ResponseError

        raise_if_cancelled()
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            with contextlib.suppress(*self.queue.errors):
                await self._renew([])  # Redis lost the group (a restart): make it again
            return
        logger.warning(
            "durable worker %s: %s failed (%s: %s); trying again",
            self.name,
            what,
            type(exc).__name__,
            exc,
        )
        await asyncio.sleep(_RETRY_PAUSE)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("durable worker: a background task failed", exc_info=task.exception())
