"""``LineWriter``: stdout written from a thread of its own.

A reader that stops reading (a full pipe) then blocks that thread, never the event loop,
so the waiter, the progress display and SIGINT/SIGTERM go on. A reader that goes away
(``EPIPE``) or a write that fails (a full disk) ends the writing at once: ``error`` says
why and ``on_failure`` is called in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

__all__ = ["LineWriter", "unwritable"]

_BATCH_LINES = 512

AroundWrite = Callable[[Callable[[], None]], None]
"""Runs a write (in the writer's thread), e.g. clearing and redrawing a progress bar
around it."""


def unwritable(stream: TextIO | None) -> str | None:
    """Why ``stream`` cannot take a line at all (closed at start, ``>&-``; a descriptor
    open for reading only), or ``None`` when it looks writable. A disk that is full shows
    only on the write itself."""
    if stream is None:  # Python's stdout when the process started without a file 1
        return "it is closed"
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test's StringIO): writable
        return None
    try:
        mode = fcntl.fcntl(descriptor, fcntl.F_GETFL)
    except OSError as exc:
        return f"it is closed ({os.strerror(exc.errno or 0)})"
    if mode & os.O_ACCMODE == os.O_RDONLY:
        return "it is open for reading only"
    return None


class LineWriter:
    """Queues lines for ``stream`` and writes them, in order, from its own thread.

    ``write`` never blocks; ``room()`` waits while the backlog is large, ``drain()`` until
    it is empty. ``stream=None`` discards every line.
    """

    high_water = 1024
    """Lines queued before ``room()`` makes the producer wait."""

    def __init__(self, stream: TextIO | None, *, around: AroundWrite | None = None) -> None:
        self._stream = stream
        self._on_failure: Callable[[OSError], object] | None = None
        self._around = around
        self._fd: int | None = None
        self._queue: deque[str] = deque()
        self._in_hand = 0
        self._closing = False
        self._condition = threading.Condition()
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None
        self._reported = False  # on_failure has run in the loop: waiters may go on
        self.written = 0

    def start(self, on_failure: Callable[[OSError], object] | None = None) -> LineWriter:
        """Start the thread (call it in the event loop that will await this writer);
        ``on_failure(error)`` is called in that loop if a write fails."""
        self._loop = asyncio.get_running_loop()
        self._on_failure = on_failure
        if self._stream is None:
            return self
        try:
            self._stream.flush()
            self._fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # not a real file (a StringIO in a test): write the text
        # A daemon: a reader that never reads again must not keep the process alive.
        self._thread = threading.Thread(target=self._run, name="qianfan-stdout", daemon=True)
        self._thread.start()
        return self

    @property
    def backlog(self) -> int:
        """Lines given but not written yet."""
        with self._condition:
            return len(self._queue) + self._in_hand

    def write(self, line: str) -> None:
        """Queue ``line`` (without its newline); dropped after a failure or with no stream."""
        if self._stream is None or self.error is not None:
            return
        with self._condition:
            self._queue.append(line)
            self._condition.notify()

    async def room(self, *, deadline: float | None = None, stall: float | None = None) -> bool:
        """Wait until the backlog is below ``high_water``; see ``drain`` for the rest."""
        return await self._settle(self.high_water - 1, deadline, stall)

    async def drain(
        self,
        timeout: float | None = None,
        *,
        deadline: float | None = None,
        stall: float | None = None,
    ) -> bool:
        """Wait until every line is written; return whether they all were. ``False``
        after a failure, after ``timeout`` seconds or at ``deadline`` (a
        ``time.monotonic()``), or once no line has been written for ``stall`` seconds (a
        reader that stopped reading)."""
        if timeout is not None:
            deadline = min(deadline or math.inf, time.monotonic() + timeout)
        return await self._settle(0, deadline, stall)

    async def _settle(self, most: int, deadline: float | None, stall: float | None) -> bool:
        written = self.written
        moved_at = time.monotonic()
        while True:
            now = time.monotonic()
            limit = math.inf if deadline is None else deadline - now
            if stall is not None:
                limit = min(limit, moved_at + stall - now)
            if limit <= 0:
                return False
            try:
                await asyncio.wait_for(
                    self._wait_until(most), None if limit == math.inf else min(limit, 0.25)
                )
            except TimeoutError:
                if self.written != written:
                    written, moved_at = self.written, time.monotonic()
                continue
            return self.error is None and self.backlog <= most

    def close(self) -> None:
        """Let the thread end once the queue is empty."""
        with self._condition:
            self._closing = True
            self._condition.notify()

    async def _wait_until(self, most: int) -> None:
        while True:
            with self._condition:
                if self.error is not None:
                    if self._reported or self._loop is None or self._loop.is_closed():
                        return
                elif len(self._queue) + self._in_hand <= most:
                    return
                if self._thread is None:
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            await waiter

    # -- the writer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closing:
                    self._condition.wait()
                if not self._queue:
                    return
                count = min(len(self._queue), _BATCH_LINES)
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_hand = count
            text = "\n".join(batch) + "\n"
            try:
                if self._around is None:
                    self._emit(text)
                else:
                    self._around(functools.partial(self._emit, text))
            except OSError as error:
                self._fail(error)
                return
            with self._condition:
                self._in_hand = 0
                self.written += count
                waiters, self._waiters = self._waiters, []
            if waiters:
                self._call_in_loop(_wake, waiters)

    def _emit(self, text: str) -> None:
        if self._fd is None:
            assert self._stream is not None
            self._stream.write(text)
            self._stream.flush()
            return
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        while data:
            data = data[os.write(self._fd, data) :]

    def _fail(self, error: OSError) -> None:
        with self._condition:
            self.error = error
            self._queue.clear()
            self._in_hand = 0
        self._call_in_loop(self._report_failure, error)

    def _report_failure(self, error: OSError) -> None:
        # In the loop, before anyone waiting for the writer goes on: a waiter that saw the
        # error before this ran would act as if stdout were fine (print the summary after
        # the reader went away, exit 0 instead of 141).
        try:
            if self._on_failure is not None:
                self._on_failure(error)
        finally:
            with self._condition:
                self._reported = True
                waiters, self._waiters = self._waiters, []
            _wake(waiters)

    def _call_in_loop(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is not None:
            # RuntimeError: the loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, *args)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
