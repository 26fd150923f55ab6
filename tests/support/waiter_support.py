"""A waiter on the virtual clock over the fake status client (``fakes.ScriptedClient``),
answering each export id from a script."""

from __future__ import annotations

from typing import Any

from fakes import Answer, ScriptedClient

from qianfan_export_wait import ExportWaiter, PollPolicy
from qianfan_export_wait.ratelimit import FixedRateLimiter
from qianfan_export_wait.waiting import VirtualClock


def make_waiter(
    script: dict[int | str, list[Answer]],
    *,
    policy: PollPolicy | None = None,
    **options: Any,
) -> tuple[ExportWaiter, ScriptedClient, VirtualClock]:
    """A waiter over a ``ScriptedClient`` answering from ``script``, both on one virtual
    clock (1e6 requests/s unless ``limiter`` is given)."""
    clock = VirtualClock()
    client = ScriptedClient(clock, script)
    options.setdefault("limiter", FixedRateLimiter(1e6))
    waiter = ExportWaiter(
        client,
        policy=policy or PollPolicy(min_delay=1, max_delay=10, timeout=100),
        clock=clock,
        **options,
    )
    return waiter, client, clock
