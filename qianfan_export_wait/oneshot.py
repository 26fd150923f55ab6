"""``wait_for_exports``: the one-call form, for scripts. It makes the client it needs, so it
sits above both the client and ``waiting/`` (which knows no client)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from .client import ExportStatusClient
from .models import ExportId
from .waiting.outcomes import UpdateHook, WaitReport
from .waiting.policy import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MIN_DELAY,
    DEFAULT_TIMEOUT,
    PollPolicy,
)
from .waiting.waiter import ExportWaiter

__all__ = ["wait_for_exports"]


async def wait_for_exports(
    ids: Iterable[ExportId],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    client: ExportStatusClient | None = None,
    min_delay: float = DEFAULT_MIN_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    qps: float | None = None,
    on_update: UpdateHook | None = None,
    **client_options: Any,
) -> WaitReport:
    """Wait for exports in one call, with a client from the environment unless given one."""
    policy = PollPolicy(min_delay=min_delay, max_delay=max_delay, timeout=timeout)
    async with contextlib.AsyncExitStack() as owned:
        if client is None:
            client = await owned.enter_async_context(ExportStatusClient.from_env(**client_options))
        waiter = ExportWaiter(
            client, policy=policy, max_in_flight=max_in_flight, qps=qps, on_update=on_update
        )
        async with waiter:
            return await waiter.wait_all(ids)
