"""The waiter's promises to a service's callers (docs/schedules.md, "What the waiter
promises"), one example each; ``test_waiter_model.py`` checks them under any interleaving."""

from __future__ import annotations

import asyncio

import pytest
from fakes import Answer, FakeDownloader
from tenacity import wait_fixed
from waiter_support import make_waiter

from qianfan_export_wait import OutcomeKind, PollPolicy
from qianfan_export_wait.ratelimit import FixedRateLimiter

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
    waiter, _, _ = make_waiter({1: [TimeoutError()]}, policy=SLOW)
    outcome = await waiter.submit(1, timeout=5)
    assert outcome.status is None and outcome.status_age is None


# -- a poll, a download and a caller each have one owner that cleans up ---------------------


async def _leave_as_the_poll_is_handed_out(waiter, client, leave) -> None:  # type: ignore[no-untyped-def]
    """Run the loop until the waiter has handed a poll to its idle worker but the worker
    has not run yet, then call ``leave()`` in that same loop iteration."""
    driver = waiter._driver
    for _ in range(10_000):
        await asyncio.sleep(0)
        if driver.polls and len(client.calls) == 1 and not driver._idle:
            leave()
            return
    raise AssertionError("the poll was never handed out")


async def test_a_stream_left_as_its_poll_is_handed_out_frees_the_slot() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Uploading"], 2: ["Done"]}
    waiter, client, _ = make_waiter(script, policy=SLOW, max_in_flight=1)
    stream = waiter.as_completed([1], timeout=None)
    stream._start()
    await _leave_as_the_poll_is_handed_out(waiter, client, stream.release)
    for _ in range(20):
        await asyncio.sleep(0)
    assert waiter.stats.in_flight == 0
    assert waiter._driver.polls == {}
    # The slot is free: a new caller's export is polled, not starved to its deadline.
    outcome = await waiter.submit(2, timeout=50)
    assert outcome.kind is OutcomeKind.DONE


async def test_a_handle_cancelled_as_its_poll_is_handed_out_frees_the_slot() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Uploading"], 2: ["Done"]}
    waiter, client, _ = make_waiter(script, policy=SLOW, max_in_flight=1)
    handle = waiter.submit(1, timeout=None)
    await _leave_as_the_poll_is_handed_out(waiter, client, handle.cancel)
    for _ in range(20):
        await asyncio.sleep(0)
    assert waiter._driver.polls == {}
    assert waiter._core.entries == {}
    outcome = await waiter.submit(2, timeout=50)
    assert outcome.kind is OutcomeKind.DONE


@pytest.mark.filterwarnings("ignore:ExportWaiter\\(downloader=:DeprecationWarning")
async def test_a_download_cancelled_before_it_first_ran_leaves_no_trace() -> None:
    files = FakeDownloader(gate=asyncio.Event())
    waiter, _, _ = make_waiter({1: ["Done"]}, policy=SLOW, downloader=files)
    stream = waiter.as_completed([1], timeout=None)
    stream._start()
    driver = waiter._driver
    for _ in range(10_000):
        await asyncio.sleep(0)
        if driver.downloads:
            stream.release()  # in the same loop iteration: the download never ran
            break
    else:
        raise AssertionError("the download never started")
    for _ in range(20):
        await asyncio.sleep(0)
    assert files.started == 0
    assert driver.downloads == {}
    assert waiter.stats.downloading == 0


# -- a new caller does not inherit another's backoff ---------------------------------------


async def test_a_caller_joining_an_export_answered_long_ago_polls_it_anew() -> None:
    slow = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(60))
    script: dict[int | str, list[Answer]] = {1: ["Uploading"], 2: ["Uploading"]}
    waiter, client, clock = make_waiter(script, policy=slow)
    first = waiter.submit(1, timeout=None)  # polled at 0, then due at 60
    await waiter.submit(2, timeout=30)  # only to be at 30 on the virtual clock
    joined_at = clock.now()
    assert 30 <= joined_at < 31
    outcome = await waiter.submit(1, timeout=5)
    polls = client.times_for(1)
    assert polls[0] == 0.0
    assert joined_at <= polls[1] <= joined_at + slow.min_delay
    assert outcome.kind is OutcomeKind.TIMEOUT
    first.cancel()


async def test_a_caller_joining_an_export_answered_just_now_shares_that_answer() -> None:
    joined: list[object] = []

    def join_on_first_answer(event: object) -> None:
        if not joined:
            joined.append(waiter.submit(1, timeout=None))

    script: dict[int | str, list[Answer]] = {1: ["Uploading", "Uploading", "Done"]}
    waiter, client, _ = make_waiter(script, policy=SLOW, on_update=join_on_first_answer)
    await waiter.submit(1, timeout=None)
    assert client.times_for(1) == [0.0, 10.0, 20.0]  # the second caller added no poll


# -- timeout means a last look was sent and answered not Done -------------------------------


def _done_from(clock, at: float):  # type: ignore[no-untyped-def]
    return lambda: "Done" if clock.now() >= at else "Uploading"


async def test_exports_done_before_their_deadline_are_not_reported_as_timeouts() -> None:
    # 100 exports finish one after another by 4 s; each caller waits 5 s; the rate limit
    # (50/s) can carry a last look for every one of them, so none may time out with a
    # stale Uploading.
    policy = PollPolicy(min_delay=1, max_delay=30, timeout=1000)
    waiter, client, clock = make_waiter({}, policy=policy, limiter=FixedRateLimiter(50))
    client.script.update({i: [_done_from(clock, i * 0.04)] for i in range(1, 101)})
    outcomes = await asyncio.gather(*(waiter.submit(i, timeout=5) for i in range(1, 101)))
    late = [outcome.export_id for outcome in outcomes if outcome.kind is not OutcomeKind.DONE]
    assert late == []


async def test_callers_sharing_one_deadline_each_get_a_last_look() -> None:
    # 200 callers arrive 20 a second, each waiting 20 s, with exports that finish at
    # scattered times; every timeout must be an export not Done at its caller's deadline,
    # looked at shortly before it.
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=1000)
    waiter, client, clock = make_waiter({}, policy=policy, limiter=FixedRateLimiter(40))
    finish = {i: (i * 7919) % 60 for i in range(1, 201)}
    client.script.update({i: [_done_from(clock, float(at))] for i, at in finish.items()})
    handles = []
    for i in range(1, 201):
        handles.append((clock.now(), waiter.submit(i, timeout=20)))
        if i % 20 == 0:
            await asyncio.sleep(0)
            clock.advance(1.0)
    for started, handle in handles:
        outcome = await handle
        deadline = started + 20
        if outcome.kind is OutcomeKind.TIMEOUT:
            assert finish[outcome.export_id] > deadline - policy.min_delay, outcome
            looks = [t for t in client.times_for(outcome.export_id) if t <= deadline]
            assert looks and looks[-1] >= deadline - policy.min_delay, (outcome, looks)
        else:
            assert outcome.kind is OutcomeKind.DONE


async def test_a_waiter_left_by_every_caller_goes_back_to_its_idle_size() -> None:
    script: dict[int | str, list[Answer]] = {i: ["Uploading"] for i in range(1, 51)}
    waiter, client, _ = make_waiter(script, policy=SLOW)
    idle_tasks = len(asyncio.all_tasks())
    handles = [waiter.submit(i, timeout=3600) for i in range(1, 51)]
    stream = waiter.as_completed(range(1, 51), timeout=3600)
    stream._start()
    for _ in range(50):
        await asyncio.sleep(0)
    for handle in handles:
        handle.cancel()
    await stream.aclose()
    for _ in range(50):
        await asyncio.sleep(0)
    sent = len(client.calls)
    core = waiter._core
    assert core.entries == {} and core.callers == 0
    assert core.book._deadlines == [] and core.looks.total == 0
    assert waiter._driver.polls == {} and waiter._driver.downloads == {}
    assert len(asyncio.all_tasks()) == idle_tasks
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(client.calls) == sent  # nothing more is sent


async def test_a_cancelled_plain_async_for_stops_waiting_every_time() -> None:
    # The cancelled task keeps its CancelledError, whose traceback keeps the frame of the
    # loop's iterator alive: leaving must not wait for that iterator to be collected.
    waiter, _, _ = make_waiter({1: ["Uploading"]}, policy=SLOW)
    kept: list[asyncio.Task[None]] = []

    async def read_all() -> None:
        async for _ in waiter.as_completed([1], timeout=None):
            pass

    for _ in range(20):
        task = asyncio.ensure_future(read_all())
        kept.append(task)
        for _ in range(5):
            await asyncio.sleep(0)
        assert waiter.stats.callers == 1
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        assert waiter.stats.callers == 0
        assert waiter.stats.pending == 0
    await waiter.aclose()


async def test_a_plain_async_for_left_by_break_stops_waiting_at_once() -> None:
    # The stream stays referenced; leaving the loop is what ends its wait, at the break.
    waiter, _, _ = make_waiter({1: ["Done"], 2: ["Uploading"]}, policy=SLOW)
    stream = waiter.as_completed([1, 2], timeout=None)
    async for outcome in stream:
        assert outcome.export_id == 1
        break
    assert waiter.stats.callers == 0 and waiter.stats.pending == 0
    assert stream.unfinished()[0].kind is OutcomeKind.PENDING
    await waiter.aclose()


async def test_a_closed_waiter_owns_no_task_and_starts_none() -> None:
    waiter, _, _ = make_waiter({1: ["Uploading"]}, policy=SLOW)
    handle = waiter.submit(1)
    for _ in range(5):
        await asyncio.sleep(0)
    owner = waiter._driver._tasks
    assert owner.open and len(owner) >= 2  # the dispatcher and a worker
    await waiter.aclose()
    assert owner.closed and not owner.open and len(owner) == 0
    assert handle.done()
    waiter._driver.kick()  # nothing starts once closed
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_a_waiter_that_fetches_files_itself_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match=r"download_each"):
        make_waiter({1: ["Done"]}, policy=SLOW, downloader=FakeDownloader())
