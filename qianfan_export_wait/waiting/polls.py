"""What the driver keeps of the polls it sends: the worker holding each one, and the
rate they go at."""

from __future__ import annotations

import asyncio
from collections import deque
from math import inf

from .entries import Entry

__all__ = ["RateMeter", "Worker"]


class Worker:
    """A worker task and the poll it holds (``entry`` and its limiter ``ticket``), from
    the moment the poll is handed to it until its answer is handled.

    The poll is the worker's to clean up, wherever a cancellation lands: in the request,
    or before the worker ran at all (handed out in the loop iteration its caller left).
    """

    __slots__ = ("entry", "task", "ticket")

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.ticket = 0
        self.task: asyncio.Task[None] = None  # type: ignore[assignment]  # set at start


class RateMeter:
    """Requests sent per second lately, from a count sampled at most once a second."""

    __slots__ = ("_samples", "next_sample")

    _WINDOW = 5.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=8)
        self.next_sample = -inf

    def sample(self, now: float, total: int) -> None:
        """Note that ``total`` requests had been sent by ``now``."""
        self._samples.append((now, total))
        self.next_sample = now + 1.0

    def rate(self, now: float, total: int) -> float:
        """Requests per second over about the last five seconds."""
        samples = self._samples
        for when, count in samples:
            if now - when <= self._WINDOW + 1.0:
                span = now - when
                return (total - count) / span if span > 0.5 else 0.0
        return 0.0
