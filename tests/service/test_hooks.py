"""``on_poll`` and ``on_update``: each answer with a typed payload; ``async def`` hooks run
off the polling path, their exceptions logged once, and no export is ever lost to them
(virtual clock, in-memory client)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiter_support import make_waiter

from qianfan_export_wait import (
    ExportOutcome,
    OutcomeKind,
    PollEvent,
    RequestKind,
    StateChange,
    ThrottledError,
    TransientError,
)


async def test_on_poll_gets_every_answer_with_its_kind_log_id_and_latency() -> None:
    events: list[PollEvent] = []
    script = {1: [ThrottledError("slow", log_id="L1"), "Running", "Done"], 2: ["Done"]}
    waiter, client, _ = make_waiter(script, on_poll=events.append, observers=[])
    await waiter.wait_all([1, 2])
    assert len(events) == len(client.calls) == 4
    assert [(e.export_id, e.kind) for e in events if e.export_id == 1] == [
        (1, RequestKind.THROTTLED),
        (1, RequestKind.OK),
        (1, RequestKind.OK),
    ]
    throttle = events[0] if events[0].export_id == 1 else events[1]
    assert isinstance(throttle.error, ThrottledError) and throttle.status is None
    assert throttle.log_id == "L1"
    answered = [e for e in events if e.kind is RequestKind.OK]
    assert all(e.status is not None and e.log_id == "1" for e in answered)
    assert all(e.latency == 0.0 for e in events)  # the virtual clock stood still


async def test_async_hooks_are_awaited_off_the_polling_path() -> None:
    release = asyncio.Event()
    polled: list[PollEvent] = []
    updates: list[Any] = []

    async def on_poll(event: PollEvent) -> None:
        await release.wait()  # would stall every poll if it were awaited in line
        polled.append(event)

    async def on_update(event: Any) -> None:
        await release.wait()
        updates.append(event)

    script = {i: ["Pending", "Running", "Done"] for i in range(1, 11)}
    waiter, client, _ = make_waiter(script, on_poll=on_poll, on_update=on_update, observers=[])
    report = await waiter.wait_all(list(script))
    assert [report[i].kind for i in script] == [OutcomeKind.DONE] * 10
    assert polled == [] and updates == []  # every outcome came before any hook ran on
    assert waiter._guard.running == len(client.calls) + 10 * 3  # 2 changes + 1 outcome each
    release.set()
    await waiter.aclose()  # waits for the hooks still running
    assert len(polled) == len(client.calls)
    assert sum(isinstance(u, StateChange) for u in updates) == 20
    assert sorted(u.export_id for u in updates if isinstance(u, ExportOutcome)) == list(script)


async def test_a_hook_still_running_at_close_is_cancelled_after_the_grace() -> None:
    cancelled = []

    async def never(event: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(event)
            raise

    waiter, _, _ = make_waiter({1: ["Done"]}, on_poll=never, observers=[])
    await waiter.wait(1)
    await waiter._guard.aclose(grace=0.0)
    assert len(cancelled) == 1


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_failing_hook_is_logged_once_and_loses_no_export(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qianfan_export_wait")

    def boom(event: Any) -> None:
        raise RuntimeError(f"hook failed on {event!r}")

    async def aboom(event: Any) -> None:
        boom(event)

    hook = aboom if asynchronous else boom
    script = {i: [TransientError("blip"), "Running", "Done"] for i in range(1, 21)}
    waiter, _, _ = make_waiter(script, on_poll=hook, on_update=hook, observers=[])
    async with waiter:
        report = await waiter.wait_all(list(script))
    assert [report[i].kind for i in script] == [OutcomeKind.DONE] * 20
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(r.getMessage() for r in errors) == [
        "on_poll hook raised RuntimeError; ignored (later ones logged at debug level)",
        "on_update hook raised RuntimeError; ignored (later ones logged at debug level)",
    ]
    assert all(r.exc_info is not None for r in errors)  # with the traceback, once


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fails=st.lists(st.booleans(), min_size=1, max_size=12),
    sleeps=st.lists(st.integers(0, 3), min_size=1, max_size=12),
    script=st.lists(
        st.lists(st.sampled_from(["Pending", "Running", "Done", "Fail", "slow", "blip"]),
                 min_size=1, max_size=4),
        min_size=1, max_size=8,
    ),
)  # fmt: skip
def test_whatever_hooks_do_every_export_gets_one_outcome(
    fails: list[bool], sleeps: list[int], script: list[list[str]]
) -> None:
    """Hooks that raise, sleep or both, in any mix, never cost an outcome."""
    calls = iter(range(10**6))

    async def hook(event: Any) -> None:
        n = next(calls)
        for _ in range(sleeps[n % len(sleeps)]):
            await asyncio.sleep(0)
        if fails[n % len(fails)]:
            raise ValueError("no")

    def answers(states: list[str]) -> list[Any]:
        made: list[Any] = []
        for state in [*states, "Done"]:
            if state == "slow":
                made.append(ThrottledError("slow"))
            elif state == "blip":
                made.append(TransientError("blip"))
            else:
                made.append(state)
        return made

    async def run() -> dict[int, OutcomeKind]:
        plan: dict[int | str, list[Any]] = {i: answers(s) for i, s in enumerate(script, 1)}
        waiter, _, _ = make_waiter(plan, on_poll=hook, on_update=hook, observers=[])
        async with waiter:
            report = await waiter.wait_all(list(plan))
        return {i: report[i].kind for i in plan}  # type: ignore[index]

    kinds = asyncio.run(run())
    assert len(kinds) == len(script)
    assert set(kinds.values()) <= {OutcomeKind.DONE, OutcomeKind.FAILED}
