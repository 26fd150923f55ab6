"""``Interrupt``: how a run is cut short, by SIGINT (exit 130), SIGTERM (143), or a stdout
that is closed (141) or cannot be written (74). The first cause cancels the main task,
which then prints what it knows; a second SIGINT or SIGTERM cancels it again, cutting
that short too."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .exits import ExitCode

__all__ = ["Interrupt", "run_interruptible"]

_SIGNALS = ((signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM))


class Interrupt:
    """The cause of an early stop, and when it came; ``trigger`` stops the main task."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self.code: ExitCode | None = None
        self.at: float | None = None
        """``time.monotonic()`` of the first cause."""

    @property
    def by_signal(self) -> bool:
        """Whether a signal stopped the run (so what is known should still be printed)."""
        return self.code in (ExitCode.SIGINT, ExitCode.SIGTERM)

    def trigger(self, code: ExitCode) -> None:
        """Stop the run with ``code``; a second signal cancels the clean-up as well."""
        if self.code is None:
            self.code = code
            self.at = time.monotonic()
            self._task.cancel()
        elif code in (ExitCode.SIGINT, ExitCode.SIGTERM):
            self._task.cancel()

    def acknowledge(self) -> None:
        """The main task has caught the cancellation this caused: let it await again."""
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()


def run_interruptible(main: Callable[[Interrupt], Coroutine[Any, Any, int]]) -> int:
    """``asyncio.run(main(interrupt))`` with SIGINT and SIGTERM wired to ``interrupt``;
    returns ``main``'s exit code, or the interruption's if ``main`` did not handle it."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupt = Interrupt(task)
        installed: list[signal.Signals] = []
        for signum, code in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, interrupt.trigger, code)
                installed.append(signum)
        try:
            return await main(interrupt)
        except asyncio.CancelledError:
            if interrupt.code is None:
                raise
            return interrupt.code
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    return asyncio.run(run())
