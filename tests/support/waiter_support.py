"""An in-memory client for waiter tests: answers each export id from a script, on the
waiter's virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

from statuses import make_status

from qianfan_export_wait import ExportWaiter, PollPolicy
from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import ClientStats
from qianfan_export_wait.models import ExportStatus
from qianfan_export_wait.ratelimit import FixedRateLimiter
from qianfan_export_wait.waiting import VirtualClock

Answer = Any  # a state name, an exception instance, or a callable returning either


class ScriptedClient:
    """Answers each export id from a script; the last answer repeats forever."""

    def __init__(self, clock: VirtualClock, script: dict[int | str, list[Answer]]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[tuple[float, int | str]] = []
        self.stats = ClientStats()
        self.credentials = Credentials("AKIDtest", "not-the-real-secret")
        self.base_url = "http://127.0.0.1:1"
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gate: asyncio.Event | None = None  # holds every request after the first

    async def fetch_once(self, export_id: int | str) -> ExportStatus:
        self.calls.append((self.clock.now(), export_id))
        self.stats.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.gate is not None and len(self.calls) > 1:
                await self.gate.wait()  # the first request proves the credentials
            answers = self.script[export_id]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if callable(answer):
                answer = answer()
            if isinstance(answer, BaseException):
                raise answer
            return make_status(export_id, answer)
        finally:
            self.in_flight -= 1

    def times_for(self, export_id: int | str) -> list[float]:
        return [when for when, polled in self.calls if polled == export_id]


def make_waiter(
    script: dict[int | str, list[Answer]],
    *,
    policy: PollPolicy | None = None,
    **options: Any,
) -> tuple[ExportWaiter, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    client = ScriptedClient(clock, script)
    options.setdefault("limiter", FixedRateLimiter(1e6))
    waiter = ExportWaiter(
        client,  # type: ignore[arg-type]
        policy=policy or PollPolicy(min_delay=1, max_delay=10, timeout=100),
        clock=clock,
        **options,
    )
    return waiter, client, clock
