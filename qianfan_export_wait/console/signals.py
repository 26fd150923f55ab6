"""``Interrupt``: how a run is cut short, by SIGINT (exit 130), SIGTERM (143), or a stdout
that is closed (141) or cannot be written (74). The first cause cancels the main task,
which then prints what it knows; a second SIGINT or SIGTERM cancels it again, cutting
that short too."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .exits import ExitCode

__all__ = ["EVENT_LOOPS", "Interrupt", "loop_factory", "run_interruptible"]

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
"""``--event-loop``: ``auto`` is uvloop when it is installed, else the standard loop."""

logger = logging.getLogger("qianfan_export_wait")

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
        self._task.uncancel()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop for ``choice`` (one of ``EVENT_LOOPS``); raises
    ``ValueError`` when uvloop is asked for but not installed."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event loop must be one of {EVENT_LOOPS}, got {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")  # the fast extra; never needed
        except ImportError:
            if choice == "uvloop":
                raise ValueError(
                    "--event-loop uvloop needs uvloop: pip install 'qianfan-export-wait[fast]'"
                ) from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run_interruptible(
    main: Callable[[Interrupt], Coroutine[Any, Any, int]], *, loop: str = "asyncio"
) -> int:
    """``asyncio.run(main(interrupt))`` on the ``loop`` asked for (see ``loop_factory``),
    with SIGINT and SIGTERM wired to ``interrupt``; returns ``main``'s exit code, or the
    interruption's if ``main`` did not handle it."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        logger.debug("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
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

    with asyncio.Runner(loop_factory=loop_factory(loop)) as running:
        return int(running.run(run()))
