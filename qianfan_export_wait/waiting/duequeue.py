"""Entries by the time their next poll is due: a bucket queue, O(1) a push."""

from __future__ import annotations

import heapq
from collections import deque
from math import floor, inf
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .entries import Entry

__all__ = ["DueQueue"]


class _Bucket(deque["Entry"]):
    """Entries due within one window; ``key`` is the one float all of them point to."""

    __slots__ = ("key",)

    def __init__(self, key: float) -> None:
        super().__init__()
        self.key = key


class DueQueue:
    """Entries by the time their next poll is due, in buckets ``resolution`` seconds wide.

    A bucket becomes ready when its window has passed, so every entry in it is due: polls
    falling due within one window go out in one wake-up, late by at most the window and
    never early. With ``resolution`` 0 every due time is its own bucket. A push costs
    O(1) (plus O(log buckets) for a new bucket), and a queued entry 8 bytes: it points to
    its bucket's key rather than holding a due time of its own.
    """

    __slots__ = ("_buckets", "_keys", "_resolution")

    def __init__(self, resolution: float) -> None:
        self._resolution = resolution
        self._buckets: dict[float, _Bucket] = {}
        self._keys: list[float] = []

    def __bool__(self) -> bool:
        return bool(self._keys)

    def _ready_time(self, key: float) -> float:
        resolution = self._resolution
        return key if resolution <= 0.0 else (key + 1.0) * resolution

    def due_time(self, entry: Entry) -> float | None:
        """When ``entry``'s bucket is ready, or ``None`` if it is not queued."""
        key = entry.due
        return None if key is None else self._ready_time(key)

    def push(self, entry: Entry, due: float) -> None:
        """Queue ``entry`` for ``due`` (moving it if it was queued for another time)."""
        resolution = self._resolution
        key = due if resolution <= 0.0 else float(floor(due / resolution))
        if entry.due == key:
            return  # already in that bucket
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
            heapq.heappush(self._keys, key)
        bucket.append(entry)
        entry.due = bucket.key

    def push_new(self, entries: list[Entry], due: float) -> None:
        """Queue ``entries``, none queued yet, all for ``due``."""
        if not entries:
            return
        resolution = self._resolution
        key = due if resolution <= 0.0 else float(floor(due / resolution))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
            heapq.heappush(self._keys, key)
        bucket.extend(entries)
        key = bucket.key
        for entry in entries:
            entry.due = key

    def ready_at(self) -> float:
        """When the earliest bucket is ready (``inf`` when empty)."""
        keys = self._keys
        return self._ready_time(keys[0]) if keys else inf

    def pop(self, now: float) -> Entry | None:
        """The next entry due at or before ``now``, unqueued; ``None`` if there is none."""
        keys = self._keys
        resolution = self._resolution
        while keys:
            key = keys[0]
            if (key if resolution <= 0.0 else (key + 1.0) * resolution) > now:
                return None
            entry = self._pop_from(key)
            if entry is not None:
                return entry
        return None

    def pop_earliest(self) -> Entry | None:
        """The entry due soonest (within a bucket), due or not."""
        keys = self._keys
        while keys:
            entry = self._pop_from(keys[0])
            if entry is not None:
                return entry
        return None

    def _pop_from(self, key: float) -> Entry | None:
        bucket = self._buckets[key]
        while bucket:
            entry = bucket.popleft()
            # Stale copies (moved, dropped, or popped already) are skipped here.
            if entry.due == key:
                entry.due = None
                if not bucket:
                    self._drop_bucket(key)
                return entry
        self._drop_bucket(key)
        return None

    def _drop_bucket(self, key: float) -> None:
        del self._buckets[key]
        heapq.heappop(self._keys)

    @staticmethod
    def discard(entry: Entry) -> None:
        """Unqueue ``entry`` (its stale copy is skipped when reached)."""
        entry.due = None
