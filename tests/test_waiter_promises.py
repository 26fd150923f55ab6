"""The waiter's promises to a service's callers (README "What the waiter promises"), one
example each; ``test_waiter_model.py`` checks them under any interleaving."""

from __future__ import annotations

import asyncio

from tenacity import wait_fixed
from waiter_support import Answer, make_waiter

from qianfan_export_wait import OutcomeKind, PollPolicy

SLOW = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(10))


# -- every entry point takes a deadline -----------------------------------------------------


async def test_wait_all_takes_a_timeout_and_keeps_what_is_known() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Done"], 2: ["Uploading"]}
    waiter, _, clock = make_waiter(script, policy=SLOW)
    report = await waiter.wait_all([1, 2], timeout=25)
    kinds = {export_id: report[export_id].kind for export_id in report}
    assert kinds == {1: OutcomeKind.DONE, 2: OutcomeKind.TIMEOUT}
    assert 25 <= clock.now() < 26


async def test_as_completed_takes_a_timeout() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Done"], 2: ["Uploading"]}
    waiter, _, clock = make_waiter(script, policy=SLOW)
    seen = [
        (outcome.export_id, outcome.kind)
        async for outcome in waiter.as_completed([1, 2], timeout=25)
    ]
    assert seen == [(1, OutcomeKind.DONE), (2, OutcomeKind.TIMEOUT)]
    assert 25 <= clock.now() < 26


async def test_a_timeout_says_how_old_its_status_is() -> None:
    waiter, client, clock = make_waiter({1: ["Uploading"]}, policy=SLOW)
    outcome = await waiter.submit(1, timeout=25)
    assert outcome.kind is OutcomeKind.TIMEOUT
    last_answer = client.times_for(1)[-1]
    assert outcome.status_age is not None
    assert abs(outcome.status_age - (clock.now() - last_answer)) < 1e-9


async def test_an_outcome_without_a_status_has_no_age() -> None:
    waiter, _, _ = make_waiter({1: [asyncio.TimeoutError()]}, policy=SLOW)
    outcome = await waiter.submit(1, timeout=5)
    assert outcome.status is None and outcome.status_age is None
