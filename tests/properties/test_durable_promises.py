"""The durable queue's promises under any interleaving of its Redis operations, as
hypothesis programs against a real ``redis-server``: submits, claims, renewals,
adoptions, outcome writes, hand-backs, worker deaths and Redis losing everything.

1. An outcome is written at most once per id (while Redis keeps it): the first writer
   wins, and each written outcome has exactly one notification.
2. Nothing is lost while Redis keeps the queue: every id submitted has an outcome, or is
   queued (its ``jobs`` field names an entry that is in the stream).
3. After Redis lost everything, a worker's renewal queues again each id it held that has
   no outcome, so those ids are queued again (promise 2 holds for them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_sync
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait.durable._scripts import (
    FINISH_SCRIPT,
    GROUP,
    REFRESH_SCRIPT,
    RELEASE_SCRIPT,
    RELEASED_CONSUMER,
    SUBMIT_SCRIPT,
    QueueKeys,
    encode_id,
)

KEYS = QueueKeys("qianfan-export-wait:{promises}")
IDS = [1, "1"]  # few ids and workers: collisions are the interesting cases
WORKERS = ["a", "b"]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    running = RedisServer(require_redis_server())
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Weighted by repetition: the operations that move ids between workers come most often.
OPERATIONS = st.sampled_from(
    ["submit"] * 3
    + ["claim"] * 3
    + ["adopt"] * 3
    + ["write"] * 3
    + ["renew"] * 2
    + ["hand_back", "die", "redis_forgets"]
)
PROGRAMS = st.lists(
    st.tuples(OPERATIONS, st.sampled_from(WORKERS), st.integers(0, len(IDS) - 1)),
    max_size=25,
)


class Model:
    """The queue on Redis driven by its scripts, as workers drive it, and what the
    promises say Redis must show after each step."""

    def __init__(self, client: redis_sync.Redis) -> None:
        self.client = client
        self.submit_script = client.register_script(SUBMIT_SCRIPT)
        self.finish_script = client.register_script(FINISH_SCRIPT)
        self.refresh_script = client.register_script(REFRESH_SCRIPT)
        self.release_script = client.register_script(RELEASE_SCRIPT)
        self.held: dict[str, dict[str, str]] = {w: {} for w in WORKERS}  # text -> entry
        self.submitted: set[str] = set()
        self.written: dict[str, int] = {}

    def run(self, operation: str, worker: str, index: int) -> None:
        getattr(self, operation)(worker, index)
        self.check()

    def _take(self, worker: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for entry, fields in entries:
            if fields:
                self.held[worker][_text(fields[b"id"])] = _text(entry)

    def _group(self) -> None:
        self.submit_script(keys=[KEYS.ids, KEYS.jobs], args=[GROUP, "timeout"])

    def submit(self, worker: str, index: int) -> None:
        text = encode_id(IDS[index])
        self.submit_script(
            keys=[KEYS.ids, KEYS.jobs, KEYS.outcome(text)],
            args=[GROUP, "timeout", text, "v1", "60" if index % 2 else ""],
        )
        self.submitted.add(text)

    def claim(self, worker: str, index: int) -> None:
        self._group()
        reply = self.client.xreadgroup(GROUP, worker, {KEYS.ids: ">"}, count=2)
        for _, entries in reply or ():
            self._take(worker, entries)

    def adopt(self, worker: str, index: int) -> None:
        """As if every other claim had gone unrenewed for ``claim_idle``."""
        self._group()
        self._take(worker, self.client.xautoclaim(KEYS.ids, GROUP, worker, 0, count=2)[1])

    def renew(self, worker: str, index: int) -> None:
        held = self.held[worker]
        items = list(held.items())
        args = [GROUP, worker]
        for text, entry in items:
            args += [text, entry, "v1", ""]
        reply = self.refresh_script(
            keys=[KEYS.ids, KEYS.jobs, *(KEYS.outcome(t) for t, _ in items)], args=args
        )
        for (text, _), verdict in zip(items, reply[:-1], strict=True):
            if _text(verdict) != "kept":
                del held[text]

    def write(self, worker: str, index: int) -> None:
        if not self.held[worker]:  # the other worker, if it holds something
            worker = next((w for w in WORKERS if self.held[w]), worker)
        held = self.held[worker]
        if not held:
            return
        text = sorted(held)[index % len(held)]
        entry = held.pop(text)
        payload = f'{{"record":{{"export_id":{text},"outcome":"done"}},"worker":"{worker}"}}'
        (wrote,) = self.finish_script(
            keys=[KEYS.ids, KEYS.jobs, KEYS.done, KEYS.outcome(text)],
            args=[GROUP, "60000", "1000", text, entry, payload],
        )
        self.written[text] = self.written.get(text, 0) + int(wrote)

    def hand_back(self, worker: str, index: int) -> None:
        entries = list(self.held[worker].values())
        self.release_script(
            keys=[KEYS.ids], args=[GROUP, worker, RELEASED_CONSUMER, "1000000000", *entries]
        )
        self.held[worker].clear()

    def die(self, worker: str, index: int) -> None:
        self.held[worker].clear()

    def redis_forgets(self, worker: str, index: int) -> None:
        self.client.flushall()
        self.written.clear()
        # Only what some worker holds can come back: at its next renewal.
        self.submitted = {t for held in self.held.values() for t in held}
        for each in WORKERS:
            self.renew(each, index)

    def check(self) -> None:
        client = self.client
        notified: dict[str, int] = {}
        for _, fields in client.xrange(KEYS.done):
            text = _text(fields[b"id"])
            notified[text] = notified.get(text, 0) + 1
        assert all(count <= 1 for count in self.written.values()), self.written
        assert notified == {t: c for t, c in self.written.items() if c}
        in_stream = {_text(entry) for entry, _ in client.xrange(KEYS.ids)}
        for text in self.submitted:
            if client.exists(KEYS.outcome(text)):
                continue
            job = client.hget(KEYS.jobs, text)
            assert job is not None, f"id {text} has neither an outcome nor a job"
            assert _text(job).split("|")[0] in in_stream, f"id {text}'s entry is gone"


def test_the_queue_keeps_its_promises_under_any_interleaving(server: RedisServer) -> None:
    client = redis_sync.Redis.from_url(server.url)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(PROGRAMS)
    @example([("submit", "a", 0), ("claim", "a", 0), ("adopt", "b", 0)] + [("write", "a", 0)] * 2)
    @example([("submit", "a", 1), ("claim", "a", 0), ("redis_forgets", "a", 0), ("renew", "a", 0)])
    def check(program: list[tuple[str, str, int]]) -> None:
        client.flushall()
        model = Model(client)
        for operation, worker, index in program:
            model.run(operation, worker, index)

    try:
        check()
    finally:
        client.close()
