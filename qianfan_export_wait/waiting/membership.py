"""What a caller's handle may do with its waiter, and nothing more: join exports, leave,
wait for the polls it cancelled, and read what is known of its exports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from math import inf

from .._checks import check_number
from ..errors import WaiterClosedError
from ..models import ExportId
from .clock import Clock
from .core import Caller, Entry, Pending, Scheduler
from .driver import Driver
from .outcomes import ExportOutcome
from .policy import PollPolicy, UsePolicyTimeout

__all__ = ["Membership"]


class Membership:
    """The seam between a waiter's callers and its core and driver. ``open`` until the
    waiter closes; then every new join raises ``WaiterClosedError``."""

    __slots__ = ("_core", "_driver", "_policy", "clock", "open")

    def __init__(self, core: Scheduler, driver: Driver, clock: Clock, policy: PollPolicy) -> None:
        self._core = core
        self._driver = driver
        self._policy = policy
        self.clock = clock
        self.open = True

    def check_usable(self) -> None:
        """Raise what a new caller gets now: the waiter is closed, or the credentials
        were refused within the cool-down."""
        if not self.open:
            raise WaiterClosedError("the waiter is closed")
        error = self._core.auth_refusal(self.clock.now())
        if error is not None:
            raise error.with_traceback(None)

    def deadline(self, now: float, timeout: float | UsePolicyTimeout | None) -> float:
        """The deadline of a caller starting ``now`` with ``timeout``."""
        if isinstance(timeout, UsePolicyTimeout):
            timeout = self._policy.timeout
        else:
            timeout = check_number("timeout", timeout, allow_none=True)
        return inf if timeout is None else now + timeout

    def join(self, caller: Caller, export_id: ExportId, now: float) -> Entry:
        """``caller`` (one export) waits on ``export_id`` from ``now``."""
        entry = self._core.join(caller, export_id, now)
        self._core.watch(caller)
        self._driver.kick()
        return entry

    def join_many(self, caller: Caller, ids: list[ExportId], *, first: bool) -> list[Entry]:
        """``caller`` waits on ``ids`` too (``first``: its first ids; it starts now)."""
        now = self.clock.now()
        core = self._core
        entries = core.join_many(caller, ids, now)
        if first:
            core.watch(caller)
        self._driver.kick()
        return entries

    def joined_all(self, caller: Caller) -> None:
        """``caller``, joining a chunk at a time, has joined every id."""
        self._core.joined_all(caller, self.clock.now())
        self._driver.kick()

    def leave(self, caller: Caller) -> list[asyncio.Task[None]]:
        """``caller`` stops waiting: cancel the polls nobody wants now; return them."""
        tasks = self._driver.cancel_polls(self._core.leave(caller))
        self._driver.kick()
        return tasks

    async def settle(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Wait until ``tasks`` (from ``leave``) have ended."""
        await self._driver.settle(tasks)

    def snapshot(self, entry: Entry, caller: Caller, now: float) -> ExportOutcome:
        """A ``pending`` outcome: what is known of ``entry`` at ``now``, for ``caller``."""
        return self._core.snapshot(entry, caller, now)

    def materialize(self, pending: Pending, caller: Caller) -> ExportOutcome:
        """The outcome ``caller`` was given as ``pending``."""
        return self._core.materialize(pending, caller)

    def timed_out(self, entry: Entry, caller: Caller, at: float) -> ExportOutcome:
        """The ``timeout`` outcome at ``at`` of a ``PendingRun``'s ``entry``."""
        return self._core.timed_out(entry, caller, at)
