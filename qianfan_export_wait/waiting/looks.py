"""The last looks owed before callers' deadlines, planned so the rate limit carries them."""

from __future__ import annotations

import bisect
from collections import deque
from math import inf
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .entries import Entry

__all__ = ["LastLooks"]


class LastLooks:
    """The last looks owed: every export with a deadline gets one poll shortly before it,
    and they are planned early enough that the rate limit can carry them all.

    Looks are owed per deadline (``Entry.look``). Sent in deadline order (earliest
    deadline first), the ``k``-th look must go by its deadline less ``k / rate``; the
    plan's ``start`` is the latest moment from which sending them back to back still
    makes every one in time, so polls go as late (as fresh) as the rate allows and no
    later. A poll sent within ``window`` of its deadline pays the look on the way.
    """

    __slots__ = ("_buckets", "_counts", "_keys", "_start", "margin", "per_request", "total")

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self.per_request = 0.0  # 1 / the rate
        self.total = 0
        self._counts: dict[float, int] = {}
        self._buckets: dict[float, deque[Entry]] = {}
        self._keys: list[float] = []  # sorted
        self._start: float | None = inf  # None: to be computed again

    def owe(self, entry: Entry) -> None:
        """``entry`` is owed a look for its (finite) deadline."""
        self.owe_many([entry], entry.deadline)

    def owe_many(self, entries: list[Entry], key: float) -> None:
        """``owe`` for many new entries, all with deadline ``key``."""
        for entry in entries:
            entry.look = key
        count = self._counts.get(key)
        if count is None:
            self._counts[key] = len(entries)
            self._buckets[key] = deque(entries)
            bisect.insort(self._keys, key)
        else:
            self._counts[key] = count + len(entries)
            self._buckets[key].extend(entries)
        self.total += len(entries)
        self._start = None

    def paid(self, entry: Entry) -> None:
        """``entry`` owes no look any more (sent, dropped, or its deadline moved)."""
        key = entry.look
        if key is None:
            return
        entry.look = None
        self.total -= 1
        count = self._counts[key] - 1
        if count:
            self._counts[key] = count
        else:
            del self._counts[key]
            del self._buckets[key]
            del self._keys[bisect.bisect_left(self._keys, key)]
        # Fewer looks owed: the plan may start later (fresher looks), never sooner.
        self._start = None

    def set_rate(self, rate: float) -> None:
        """The rate the limiter allows now (requests per second)."""
        per_request = 0.0 if rate == inf or rate <= 0 else 1.0 / rate
        if per_request != self.per_request:
            self.per_request = per_request
            self._start = None

    def start(self) -> float:
        """When looks must begin to go, one after another, so that all are in time
        (``inf`` when none is owed)."""
        start = self._start
        if start is not None:
            return start
        per_request = self.per_request
        total = self.total
        best = inf
        owed = 0
        counts = self._counts
        for key in self._keys:
            if key - total * per_request >= best:
                break  # no later deadline can start sooner
            owed += counts[key]
            term = key - owed * per_request
            if term < best:
                best = term
        start = self._start = best - self.margin if best < inf else inf
        return start

    def pop(self) -> Entry | None:
        """The entry owing the look with the earliest deadline, its look paid."""
        keys = self._keys
        while keys:
            key = keys[0]
            bucket = self._buckets[key]
            while bucket:
                entry = bucket.popleft()
                if entry.look == key:  # (stale copies: paid or moved since)
                    self.paid(entry)
                    return entry
            # Only stale copies were left: the count says otherwise only by a bug.
            raise AssertionError("LastLooks: a count without its entries")  # pragma: no cover
        return None
