"""``DurableQueue``: ids to wait for, and their outcomes, kept on Redis for any process."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._checks import check_number
from ..errors import ConfigurationError
from ..models import ExportId, validate_export_id
from ..waiting.outcomes import OutcomeKind
from ..waiting.policy import DEFAULT_TIMEOUT
from ._scripts import FINISH_SCRIPT, GROUP, SUBMIT_SCRIPT, QueueKeys, decode_id, encode_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "API_GENERATIONS",
    "DurableOutcome",
    "DurableQueue",
    "Submitted",
    "queue_from_url",
]

logger = logging.getLogger("qianfan_export_wait")

API_GENERATIONS = ("v1", "v2")
"""The operations an id can travel with: which generation of the API waits for it."""

_CHUNK = 500
_RETRY_PAUSE = 0.5


@dataclass(frozen=True, slots=True)
class DurableOutcome:
    """One id's outcome as a worker wrote it: ``record`` is the ``wait`` command's JSON
    object for it; ``auth_failed`` and ``unavailable`` say why an ``error`` ended it."""

    export_id: ExportId
    kind: OutcomeKind
    record: dict[str, Any]
    api: str = "v1"
    auth_failed: bool = False
    unavailable: bool = False
    worker: str = ""

    @classmethod
    def from_json(cls, text: str | bytes) -> DurableOutcome:
        """Read one stored outcome."""
        data = json.loads(text)
        record = data["record"]
        return cls(
            export_id=validate_export_id(record["export_id"]),
            kind=OutcomeKind(record["outcome"]),
            record=record,
            api=str(data.get("api", "v1")),
            auth_failed=bool(data.get("auth_failed", False)),
            unavailable=bool(data.get("unavailable", False)),
            worker=str(data.get("worker", "")),
        )


@dataclass(frozen=True, slots=True)
class Submitted:
    """What ``submit`` did with one id: ``queued`` it, ``joined`` a wait already queued,
    or found it ``finished`` (its outcome is kept); ``deadline`` in Redis time."""

    export_id: ExportId
    status: str
    deadline: float | None


@dataclass(slots=True)
class _Awaited:
    api: str
    deadline: float | None
    resubmit: bool = field(default=True)


class DurableQueue:
    """Waits that outlive a process: ids submitted from anywhere, waited for by any
    ``Worker``, outcomes read by anyone (``result``, ``results``), all on Redis.

    ``key`` defaults to the fleet limiter's prefix for ``access_key``, so the queue and
    the shared rate limit live in one Redis Cluster slot. ``outcome_ttl``: seconds an
    outcome is kept. ``block``: seconds one blocking read of the notification stream
    lasts before it is sent again (``result`` never polls for outcomes in between).
    ``timeout`` bounds every other Redis call. Importing this module does not import
    ``redis``; making a queue does.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        access_key: str | None = None,
        key: str | None = None,
        outcome_ttl: float = 86_400.0,
        notify_maxlen: int = 100_000,
        block: float = 2.0,
        owns_client: bool = False,
        name: str = "redis",
    ) -> None:
        from redis.exceptions import RedisError

        from ..fleet.model import fleet_key

        check_number("outcome_ttl", outcome_ttl)
        check_number("block", block)
        if isinstance(notify_maxlen, bool) or not isinstance(notify_maxlen, int):
            raise ConfigurationError(f"notify_maxlen must be an int, got {notify_maxlen!r}")
        if notify_maxlen < 1000:
            raise ConfigurationError(f"notify_maxlen must be >= 1000, got {notify_maxlen!r}")
        if key is None:
            if not access_key:
                raise ConfigurationError("a durable queue needs access_key or key")
            key = fleet_key(access_key)
        self.key = key
        self.keys = QueueKeys(key)
        self.outcome_ttl = float(outcome_ttl)
        self.notify_maxlen = notify_maxlen
        self.block = float(block)
        self.name = name
        self.redis = redis
        self.errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._submit = redis.register_script(SUBMIT_SCRIPT)
        self._finish = redis.register_script(FINISH_SCRIPT)
        self._owns_client = owns_client
        self._awaited: dict[str, _Awaited] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"DurableQueue({self.name!r}, key={self.key!r})"

    async def __aenter__(self) -> DurableQueue:
        await self.redis.ping()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis client if the queue made it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.redis.aclose()

    # ------------------------------------------------------------------ submit

    async def submit(
        self,
        ids: Iterable[ExportId],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        api: str = "v1",
    ) -> list[Submitted]:
        """Queue ``ids`` for the workers, each with a deadline ``timeout`` seconds from now
        (``None``: none), stored as an absolute time. An id already queued is joined (its
        first deadline stands); an id whose outcome is kept is left as it is. ``api``
        (``"v1"`` or ``"v2"``) travels with each id to the worker."""
        check_number("timeout", timeout, allow_none=True)
        return await self._submit_many(
            _checked_ids(ids), api, "timeout", "" if timeout is None else repr(float(timeout))
        )

    async def _submit_many(
        self, ids: Sequence[ExportId], api: str, mode: str, value: str
    ) -> list[Submitted]:
        if api not in API_GENERATIONS:
            raise ConfigurationError(f"api must be one of {API_GENERATIONS}, got {api!r}")
        answers: list[Submitted] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            encoded = [encode_id(export_id) for export_id in chunk]
            args: list[str] = [GROUP, mode]
            for text in encoded:
                args += [text, api, value]
            reply = await self._submit(
                keys=[self.keys.ids, self.keys.jobs, *map(self.keys.outcome, encoded)], args=args
            )
            for export_id, text, (status, deadline) in zip(chunk, encoded, reply, strict=False):
                status, deadline = _text(status), _text(deadline)
                at = float(deadline) if deadline else None
                answers.append(Submitted(export_id, status, at))
                if status != "finished":
                    self._awaited.setdefault(text, _Awaited(api, at))
        return answers

    # ------------------------------------------------------------------ outcomes

    async def outcomes(self, ids: Iterable[ExportId]) -> dict[ExportId, DurableOutcome]:
        """The outcomes kept for ``ids`` now (one look, no waiting)."""
        found: dict[ExportId, DurableOutcome] = {}
        for text, outcome in (await self._look([encode_id(i) for i in _checked_ids(ids)])).items():
            found[decode_id(text)] = outcome
        return found

    async def _look(self, encoded: Sequence[str]) -> dict[str, DurableOutcome]:
        found: dict[str, DurableOutcome] = {}
        for start in range(0, len(encoded), _CHUNK):
            chunk = encoded[start : start + _CHUNK]
            values = await self.redis.mget([self.keys.outcome(text) for text in chunk])
            for text, value in zip(chunk, values, strict=True):
                if value is not None:
                    found[text] = DurableOutcome.from_json(value)
        return found

    async def result(self, export_id: ExportId) -> DurableOutcome:
        """Wait for one id's outcome, from any process (bound it with ``asyncio.timeout``)."""
        async for outcome in self.results([export_id]):
            return outcome
        raise AssertionError("results() ended without an outcome")  # pragma: no cover

    async def results(self, ids: Iterable[ExportId]) -> AsyncIterator[DurableOutcome]:
        """Each id's outcome as it is written (those already kept first), from any process.

        Reads the notification stream's last entry, then looks for kept outcomes, then
        blocks on the stream from that entry: an outcome written between the look and
        the read is in the stream after it, so none is missed and nothing polls. After
        Redis was unreachable it looks again; ids this queue object submitted whose wait
        Redis forgot (a restart without persistence) are submitted again, with their
        original deadlines."""
        remaining = {encode_id(export_id): export_id for export_id in _checked_ids(ids)}
        recovering = False
        while remaining:
            try:
                if recovering:
                    await self._submit_forgotten(list(remaining))
                last = await self._last_notification()
                for text, outcome in (await self._look(list(remaining))).items():
                    remaining.pop(text, None)
                    self._awaited.pop(text, None)
                    yield outcome
                recovering = False
                while remaining:
                    last, fresh, behind = await self._read_notifications(last, remaining)
                    if behind:
                        fresh = list(remaining)
                    for text, outcome in (await self._look(fresh)).items():
                        if remaining.pop(text, None) is not None:
                            self._awaited.pop(text, None)
                            yield outcome
            except self.errors as exc:
                raise_if_cancelled()
                logger.warning(
                    "durable queue: Redis at %s did not answer (%s); trying again",
                    self.name,
                    type(exc).__name__,
                )
                recovering = True
                await asyncio.sleep(_RETRY_PAUSE)

    async def _last_notification(self) -> str:
        newest = await self.redis.xrevrange(self.keys.done, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def _read_notifications(
        self, last: str, remaining: dict[str, ExportId]
    ) -> tuple[str, list[str], bool]:
        """Block for notifications after ``last``; return the new last entry, the ids
        among ``remaining`` that were notified, and whether the stream was trimmed past
        ``last`` (then every remaining id must be looked at)."""
        reply: Any = await self.redis.xread(
            {self.keys.done: last}, count=_CHUNK * 4, block=round(self.block * 1000)
        )
        raise_if_cancelled()  # a cancellation redis-py lost in the blocking read
        if not reply:
            return last, [], False
        entries = reply[0][1]
        fresh = []
        for _entry, fields in entries:
            text = _text(fields.get(b"id", b""))
            if text in remaining:
                fresh.append(text)
        behind = False
        if len(entries) == _CHUNK * 4:  # behind the head: trimming may have passed us
            oldest: Any = await self.redis.xrange(self.keys.done, count=1)
            behind = bool(oldest) and _stream_id(_text(oldest[0][0])) > _stream_id(last)
        return _text(entries[-1][0]), fresh, behind

    async def _submit_forgotten(self, encoded: list[str]) -> None:
        """Submit again the ids this object submitted that Redis no longer knows."""
        mine = [(text, self._awaited[text]) for text in encoded if text in self._awaited]
        by_call: dict[tuple[str, str], list[ExportId]] = {}
        for text, awaited in mine:
            value = "" if awaited.deadline is None else repr(awaited.deadline)
            by_call.setdefault((awaited.api, value), []).append(decode_id(text))
        for (api, value), ids in by_call.items():
            answers = await self._submit_many(ids, api, "deadline", value)
            queued = sum(1 for answer in answers if answer.status == "queued")
            if queued:
                logger.warning(
                    "durable queue: Redis at %s had forgotten %d waited-for ids; queued again",
                    self.name,
                    queued,
                )

    # ------------------------------------------------------------------ for workers

    async def finish(self, items: Sequence[tuple[str, str, str]]) -> list[bool]:
        """Write outcomes, first writer wins: ``(encoded id, entry, outcome JSON)`` each;
        acknowledge and delete their entries. Whether each was written by this call."""
        args = [GROUP, str(round(self.outcome_ttl * 1000)), str(self.notify_maxlen)]
        for item in items:
            args += list(item)
        reply = await self._finish(
            keys=[
                self.keys.ids,
                self.keys.jobs,
                self.keys.done,
                *(self.keys.outcome(text) for text, _, _ in items),
            ],
            args=args,
        )
        return [bool(int(value)) for value in reply]


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task is being cancelled: redis-py can turn a
    cancellation that lands in a blocking read into a ``TimeoutError``, which a loop that
    retries on Redis errors would otherwise swallow, running on after SIGTERM."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _checked_ids(ids: Iterable[ExportId]) -> list[ExportId]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ConfigurationError(f"ids must be an iterable of export ids, got {type(ids).__name__}")
    unique: dict[tuple[type, ExportId], ExportId] = {}
    for value in ids:
        try:
            checked = validate_export_id(value)
        except ValueError as exc:
            raise ConfigurationError(f"invalid export id, nothing was queued: {exc}") from None
        unique.setdefault((type(checked), checked), checked)
    return list(unique.values())


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def redis_client(url: str, *, timeout: float, block: float) -> tuple[Redis, str]:
    """A Redis client for ``url`` whose reads may block ``block`` seconds, and the URL
    to show (no credentials). Raises ``ConfigurationError`` for a bad URL or no redis."""
    from ..fleet.setup import redis_from_url

    client, shown, _ = redis_from_url(url, timeout=timeout, read_timeout=block + timeout)
    return client, shown


def queue_from_url(
    url: str, *, access_key: str | None = None, key: str | None = None, **options: Any
) -> DurableQueue:
    """A :class:`DurableQueue` with its own client for ``url``, closed with the queue."""
    block = float(options.get("block", 2.0))
    timeout = float(options.pop("timeout", 5.0))
    if not 0 < timeout < math.inf:
        raise ConfigurationError(f"timeout must be a finite number > 0, got {timeout!r}")
    client, shown = redis_client(url, timeout=timeout, block=block)
    return DurableQueue(
        client, access_key=access_key, key=key, owns_client=True, name=shown, **options
    )
