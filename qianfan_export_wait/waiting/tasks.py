"""One owner for a set of background tasks, in the manner of ``asyncio.TaskGroup``: every
task starts through the owner, none is started once it closes, and ``aclose`` cancels
them all and waits until each has ended. Unlike a ``TaskGroup`` it needs no ``async with``
around its life (a waiter used without one starts tasks on demand), and a task that fails
does not cancel its siblings: each handles its own errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskOwner"]


class TaskOwner:
    """The background tasks of one owner. ``open`` until ``aclose`` begins; then
    ``spawn`` refuses, and ``closed`` once every task has ended."""

    __slots__ = ("_tasks", "closed", "open")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.open = True
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
    ) -> asyncio.Task[Any]:
        """Start ``coro`` as a task owned here."""
        if not self.open:
            coro.close()
            raise RuntimeError("the task owner is closed: no task may start")
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> list[asyncio.Task[Any]]:
        """Start no task from now on; cancel every task still running and return them
        (``wait`` for them, or call ``aclose``)."""
        self.open = False
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        return tasks

    async def aclose(self) -> None:
        """``close``, then wait until every task has ended."""
        await self.wait(self.close())

    async def wait(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Wait until ``tasks`` (from ``close``) have ended; then this owner is closed."""
        if tasks:
            await asyncio.wait(tasks)
        self.closed = not self.open and not self._tasks
