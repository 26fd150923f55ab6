"""The waiter as a long-lived service: many callers through one scheduler, supervision,
deadlines and outages, on a virtual clock with an in-memory client."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from fakes import Answer, Request, ScriptedClient
from statuses import make_status
from tenacity import RetryCallState, wait_fixed
from waiter_support import make_waiter

from qianfan_export_wait import (
    AuthError,
    ConfigurationError,
    ExportStatus,
    ExportTimeoutError,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
    UnexpectedError,
    VirtualClock,
    WaiterClosedError,
)
from qianfan_export_wait.ratelimit import FixedRateLimiter, Reservation

SLOW = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=wait_fixed(10))
FLAKY = TransientError("HTTP 502", http_status=502)
DENIED = AuthError("SignatureDoesNotMatch", http_status=401)


def other_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


# -- one scheduler for every caller ---------------------------------------------------------------


async def test_ten_callers_of_one_id_send_the_requests_of_one() -> None:
    script: dict[int | str, list[Answer]] = {7: ["Pending", "Pending", "Uploading", "Done"]}
    waiter, client, _ = make_waiter(script, policy=SLOW)
    statuses = await asyncio.gather(*(waiter.wait(7) for _ in range(10)))
    assert {status.state_name for status in statuses} == {"Done"}
    assert len(client.calls) == 4


async def test_max_in_flight_holds_across_every_caller() -> None:
    waiter, client, _ = make_waiter({i: ["Done"] for i in range(1, 51)}, max_in_flight=2)
    client.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(waiter.wait(i)) for i in range(1, 51)]
    await until(lambda: client.in_flight == 2)
    await settle()
    assert client.in_flight == 2
    client.gate.set()
    await asyncio.gather(*tasks)
    assert client.peak_in_flight == 2


class NeverWaits:
    """A limiter that never delays anything, so only max_in_flight holds polls back."""

    rate = float("inf")

    def __init__(self) -> None:
        self.tickets = 0

    def reserve(self, now: float) -> Reservation:
        self.tickets += 1
        return Reservation(0.0, self.tickets)

    def on_success(self, now: float, ticket: int) -> None:
        pass

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        pass


async def test_max_in_flight_holds_when_the_limiter_lets_everything_go_at_once() -> None:
    script: dict[int | str, list[Answer]] = {i: ["Done"] for i in range(1, 1001)}
    waiter, client, _ = make_waiter(script, max_in_flight=5, limiter=NeverWaits())
    client.gate = asyncio.Event()
    task = asyncio.ensure_future(waiter.wait_all(range(1, 1001)))
    await until(lambda: client.in_flight == 5)
    await settle()
    assert client.in_flight == 5 and waiter.stats.in_flight == 5
    client.gate.set()
    assert (await task).ok
    assert client.peak_in_flight == 5
    await settle()
    assert other_tasks() == []  # no more workers than that, and none left behind


async def test_a_wrong_key_costs_one_request_for_fifty_callers_and_later_calls_raise_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waiter, client, _ = make_waiter({i: [DENIED] for i in range(1, 60)}, max_in_flight=64)
    with caplog.at_level("ERROR", logger="qianfan_export_wait"):
        results = await asyncio.gather(
            *(waiter.wait(i) for i in range(1, 51)), return_exceptions=True
        )
    assert all(isinstance(result, AuthError) for result in results)
    assert len(client.calls) == 1
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    with pytest.raises(AuthError):
        await waiter.wait(51)
    with pytest.raises(AuthError):
        await waiter.wait_all([52, 53])
    with pytest.raises(AuthError):
        waiter.submit(54)
    with pytest.raises(AuthError):
        waiter.as_completed([55])
    assert len(client.calls) == 1


async def test_stats_count_over_the_waiters_life_and_show_what_is_pending_now() -> None:
    waiter, _client, _ = make_waiter({i: ["Pending", "Done"] for i in range(1, 12)}, policy=SLOW)
    for export_id in range(1, 11):
        await waiter.wait(export_id)
    handle = waiter.submit(11)
    stats = waiter.stats
    assert (stats.total, stats.done, stats.requests) == (11, 10, 20)
    assert (stats.pending, stats.callers) == (1, 1)
    await handle
    assert waiter.stats.pending == 0 and waiter.stats.callers == 0


async def test_one_callers_timeout_ends_only_its_wait() -> None:
    script: dict[int | str, list[Answer]] = {7: ["Pending"] * 5 + ["Done"]}
    waiter, client, clock = make_waiter(script, policy=SLOW)
    hurried = asyncio.ensure_future(waiter.wait(7, timeout=15))
    patient = asyncio.ensure_future(waiter.wait(7, timeout=None))
    with pytest.raises(ExportTimeoutError):
        await hurried
    assert clock.now() == pytest.approx(15)
    assert (await patient).state_name == "Done"
    # 0, 10, 15 (the hurried caller's last poll), then on every 10 s: one schedule for both.
    assert client.times_for(7) == pytest.approx([0, 10, 15, 25, 35, 45])


async def test_cancelling_one_caller_leaves_the_other_waiting() -> None:
    script: dict[int | str, list[Answer]] = {7: ["Pending", "Pending", "Done"]}
    waiter, _client, _ = make_waiter(script, policy=SLOW)
    leaving = asyncio.ensure_future(waiter.wait(7))
    staying = asyncio.ensure_future(waiter.wait(7))
    await settle()
    leaving.cancel()
    assert (await staying).state_name == "Done"
    assert leaving.cancelled()


async def test_an_export_nobody_waits_for_is_polled_no_more() -> None:
    waiter, client, clock = make_waiter({7: ["Pending"]}, policy=SLOW)
    task = asyncio.ensure_future(waiter.wait(7))
    await until(lambda: client.calls)
    task.cancel()
    calls = len(client.calls)
    await settle()
    clock.advance(500)
    await settle()
    assert len(client.calls) == calls
    assert waiter.stats.pending == 0 and other_tasks() == []


async def test_ids_can_be_added_while_others_are_being_polled() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Pending"] * 4 + ["Done"], 2: ["Done"]}
    waiter, client, clock = make_waiter(script, policy=SLOW)
    long_wait = asyncio.ensure_future(waiter.wait_all([1]))
    await until(lambda: len(client.calls) >= 2)
    added_at = clock.now()
    outcome = await waiter.submit(2)
    assert outcome.kind is OutcomeKind.DONE
    assert outcome.elapsed == pytest.approx(0, abs=1e-3)
    assert client.times_for(2) == pytest.approx([added_at], abs=1e-3)
    assert not long_wait.done()
    report = await long_wait
    assert report[1].kind is OutcomeKind.DONE


async def test_a_handle_can_be_looked_at_before_its_outcome() -> None:
    waiter, client, _ = make_waiter({7: ["Uploading"]}, policy=SLOW)
    handle = waiter.submit(7)
    await until(lambda: client.calls)
    await settle()
    snapshot = handle.snapshot()
    assert snapshot.kind is OutcomeKind.PENDING
    assert snapshot.status is not None and snapshot.status.state_name == "Uploading"
    assert not handle.done()
    assert handle.cancel()
    await settle()
    assert waiter.stats.pending == 0


async def test_awaiting_a_handle_gives_the_outcome_it_keeps() -> None:
    waiter, _, _ = make_waiter({7: ["Uploading", "Done"]}, policy=SLOW)
    handle = waiter.submit(7)
    outcome = await handle
    assert outcome.kind is OutcomeKind.DONE
    assert handle.done() and handle.outcome() is outcome and handle.snapshot() is outcome


# -- supervision -----------------------------------------------------------------------------------


class RaisesOnCall(wait_fixed):
    def __init__(self, on_call: int) -> None:
        super().__init__(10)
        self.calls = 0
        self.on_call = on_call

    def __call__(self, retry_state: RetryCallState) -> float:
        self.calls += 1
        if self.calls == self.on_call:
            raise ZeroDivisionError("a bug in a wait strategy")
        return super().__call__(retry_state)


@pytest.fixture
async def unretrieved() -> Any:
    """Exceptions the event loop reports as never retrieved during the test."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def test_a_strategy_that_raises_ends_that_export_as_error_and_the_others_go_on(
    unretrieved: list[dict[str, Any]],
) -> None:
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=RaisesOnCall(5))
    script: dict[int | str, list[Answer]] = {i: ["Pending"] * 3 + ["Done"] for i in (1, 2)}
    waiter, _, _ = make_waiter(script, policy=policy)
    report = await asyncio.wait_for(waiter.wait_all([1, 2]), 5)
    kinds = sorted(outcome.kind for outcome in report.values())
    assert kinds == [OutcomeKind.DONE, OutcomeKind.ERROR]
    (broken,) = report.errors
    assert isinstance(broken.error, UnexpectedError)
    assert isinstance(broken.error.__cause__, ZeroDivisionError)
    gc.collect()
    assert unretrieved == []


async def test_wait_raises_the_unexpected_error_instead_of_hanging() -> None:
    policy = PollPolicy(min_delay=1, max_delay=100, timeout=1000, wait=RaisesOnCall(1))
    waiter, _, _ = make_waiter({1: ["Pending"]}, policy=policy)
    with pytest.raises(UnexpectedError, match="ZeroDivisionError"):
        await asyncio.wait_for(waiter.wait(1), 5)


class BrokenLimiter:
    rate = 10.0

    def reserve(self, now: float) -> Reservation:
        raise OSError("the limiter's store is gone")

    def on_success(self, now: float, ticket: int) -> None:
        pass

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        pass


async def test_a_limiter_that_raises_ends_every_wait_as_error_and_the_waiter_recovers(
    unretrieved: list[dict[str, Any]],
) -> None:
    waiter, client, _ = make_waiter({i: ["Done"] for i in range(1, 6)}, limiter=BrokenLimiter())
    report = await asyncio.wait_for(waiter.wait_all(range(1, 5)), 5)
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.ERROR}
    assert all(isinstance(outcome.error, UnexpectedError) for outcome in report.values())
    assert client.calls == []
    waiter.limiter = FixedRateLimiter(1e6)  # a fixed limiter: later calls work again
    assert (await waiter.wait(5)).state_name == "Done"
    assert unretrieved == []


class ClosedClient(ScriptedClient):
    async def answer(self, request: Request) -> ExportStatus:
        raise RuntimeError("Session is closed")


async def test_a_closed_client_ends_exports_as_error_instead_of_hanging(
    caplog: pytest.LogCaptureFixture, unretrieved: list[dict[str, Any]]
) -> None:
    clock = VirtualClock()
    client = ClosedClient(clock, {})
    waiter = ExportWaiter(client, clock=clock, limiter=FixedRateLimiter(1e6))  # type: ignore[arg-type]
    report = await asyncio.wait_for(waiter.wait_all(range(1, 21)), 5)
    assert len(report.errors) == 20
    assert all("Session is closed" in str(outcome.error) for outcome in report.values())
    assert len([r for r in caplog.records if r.exc_info]) == 1  # one traceback, not twenty
    assert unretrieved == []


class GetStatusOnly:
    """The smallest client the waiter accepts: ``async get_status``."""

    def __init__(self) -> None:
        self.asked: list[int | str] = []

    async def get_status(self, export_id: int | str) -> ExportStatus:
        self.asked.append(export_id)
        return make_status(export_id, "Done")


async def test_any_object_with_async_get_status_is_a_client() -> None:
    client = GetStatusOnly()
    async with ExportWaiter(client, clock=VirtualClock()) as waiter:
        report = await waiter.wait_all([1, 2, "amemt-x"])
    assert report.ok and client.asked == [1, 2, "amemt-x"]


# -- leaving and closing ---------------------------------------------------------------------------


async def test_leaving_as_completed_stops_polling_even_while_the_stream_is_referenced() -> None:
    script: dict[int | str, list[Answer]] = {1: ["Done"], **{i: ["Pending"] for i in range(2, 50)}}
    waiter, client, clock = make_waiter(script)
    stream = waiter.as_completed(range(1, 50))
    async for outcome in stream:
        assert outcome.export_id == 1
        break
    calls = len(client.calls)
    clock.advance(1000)
    await settle()
    assert len(client.calls) == calls
    assert waiter.stats.pending == 0
    assert other_tasks() == []
    assert stream is not None  # still referenced, on purpose


async def test_unfinished_gives_each_export_not_yet_yielded_as_pending_with_its_last_state() -> (
    None
):
    script: dict[int | str, list[Answer]] = {
        1: ["Pending", "Done"],
        2: ["Uploading"],
        3: ["Pending"],
    }
    waiter, _, _ = make_waiter(script, policy=SLOW)
    stream = waiter.as_completed([1, 2, 3])
    async with stream:
        async for outcome in stream:
            assert outcome.export_id == 1
            break
    pending = stream.unfinished()
    assert [(o.export_id, o.kind, o.status.state_name) for o in pending if o.status] == [
        (2, OutcomeKind.PENDING, "Uploading"),
        (3, OutcomeKind.PENDING, "Pending"),
    ]


async def test_iter_unfinished_unpacks_one_pending_export_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script: dict[int | str, list[Answer]] = {i: ["Uploading"] for i in range(1, 4)}
    waiter, _, _ = make_waiter(script, policy=SLOW)
    stream = waiter.as_completed([1, 2, 3])
    async with stream:
        await settle()
    unpacked: list[object] = []
    snapshot = waiter._core.snapshot
    monkeypatch.setattr(
        waiter._core, "snapshot", lambda *args: unpacked.append(args[0]) or snapshot(*args)
    )
    lazily = stream.iter_unfinished()
    assert unpacked == []
    first = next(lazily)
    assert (first.export_id, len(unpacked)) == (1, 1)
    assert [o.export_id for o in lazily] == [2, 3]


async def test_closing_the_waiter_ends_every_wait_and_later_calls_raise() -> None:
    waiter, _, _ = make_waiter({1: ["Pending"], 2: ["Pending"]}, policy=SLOW)
    async with waiter:
        single = asyncio.ensure_future(waiter.wait(1))
        batch = asyncio.ensure_future(waiter.wait_all([2]))
        await settle()
    with pytest.raises(WaiterClosedError):
        await single
    with pytest.raises(WaiterClosedError):
        await batch
    with pytest.raises(WaiterClosedError):
        await waiter.wait(3)
    assert other_tasks() == []


async def test_a_waiter_used_without_async_with_leaves_no_task_behind() -> None:
    waiter, _, _ = make_waiter({i: ["Pending", "Done"] for i in range(1, 5)}, policy=SLOW)
    await waiter.wait_all(range(1, 5))
    await settle()
    assert other_tasks() == []
    assert (await waiter.wait(1)).state_name == "Done"  # and it still works afterwards


# -- deadlines hold ------------------------------------------------------------------------------


async def test_constant_throttling_ends_each_export_at_its_deadline() -> None:
    throttled = ThrottledError("Open api qps request limit reached", code=18)
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=100)
    waiter, _, clock = make_waiter({1: [throttled]}, policy=policy, limiter=FixedRateLimiter(2))
    report = await waiter.wait_all([1])
    assert report[1].kind is OutcomeKind.TIMEOUT
    assert clock.now() <= 100.5


async def test_retry_after_of_an_hour_does_not_carry_past_a_ten_second_timeout() -> None:
    slow_down = ThrottledError("slow down", code=18, retry_after=3600.0)
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=10)
    waiter, _client, clock = make_waiter(
        {1: [slow_down], 2: ["Pending"]}, policy=policy, limiter=FixedRateLimiter(5)
    )
    report = await waiter.wait_all([1, 2])
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.TIMEOUT}
    assert clock.now() == pytest.approx(10)


async def test_an_export_still_queued_ends_at_its_deadline_unpolled() -> None:
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=25)
    script: dict[int | str, list[Answer]] = {i: ["Pending"] for i in range(1, 11)}
    waiter, _, clock = make_waiter(script, policy=policy, limiter=FixedRateLimiter(0.1))
    report = await waiter.wait_all(range(1, 11))
    assert clock.now() == pytest.approx(25)
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.TIMEOUT}
    assert sum(1 for outcome in report.values() if outcome.polls == 0) == 7


# -- outages ---------------------------------------------------------------------------------------


async def test_an_outage_is_one_probe_at_a_time_then_everyone_at_once() -> None:
    clock_holder: list[VirtualClock] = []

    def down_for_a_minute(state: str) -> Any:
        return lambda: FLAKY if 1 <= clock_holder[0].now() < 61 else state

    script: dict[int | str, list[Answer]] = {
        i: ["Pending", down_for_a_minute("Pending"), down_for_a_minute("Done")]
        for i in range(1, 201)
    }
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=1000, wait=wait_fixed(2))
    waiter, client, clock = make_waiter(script, policy=policy)
    clock_holder.append(clock)
    report = await waiter.wait_all(range(1, 201))
    assert report.ok
    during = [when for when, _ in client.calls if 1 <= when < 61]
    assert len(during) <= 8 + 60 / 2  # the failures that revealed it, then one probe per 2 s
    after = [when for when, _ in client.calls if when >= 61]
    assert max(after) - 61 <= 2 + 5  # every export answered within one probe's backoff


async def test_transient_errors_end_exports_as_unavailable_after_max_unavailable() -> None:
    policy = PollPolicy(min_delay=1, max_delay=60, timeout=10_000, max_unavailable=120)
    waiter, client, clock = make_waiter({i: [FLAKY] for i in range(1, 101)}, policy=policy)
    report = await waiter.wait_all(range(1, 101))
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.ERROR}
    assert len(report.unavailable) == 100
    assert all(isinstance(o.error, ServiceUnavailableError) for o in report.values())
    assert 120 <= clock.now() <= 126
    assert len(client.calls) <= 8 + 120 / 0.1  # never one retry chain per export


# -- many ids in one stream --------------------------------------------------------------------


class NotesTheFirstRequest(ScriptedClient):
    """Notes how many exports the waiter had when the first request went out."""

    waiter: ExportWaiter | None = None
    joined_at_first_request: int | None = None

    async def fetch_once(self, export_id: int | str) -> ExportStatus:
        if self.joined_at_first_request is None and self.waiter is not None:
            self.joined_at_first_request = self.waiter.stats.total
        return await super().fetch_once(export_id)


async def test_a_stream_of_many_ids_polls_before_every_id_has_joined() -> None:
    ids = range(1, 20_001)
    clock = VirtualClock()
    client = NotesTheFirstRequest(clock, {i: ["Done"] for i in ids})
    waiter = ExportWaiter(client, clock=clock, limiter=FixedRateLimiter(1e6))  # type: ignore[arg-type]
    client.waiter = waiter
    seen = [outcome.export_id async for outcome in waiter.as_completed(ids)]
    assert sorted(seen) == list(ids)  # type: ignore[type-var]
    assert client.joined_at_first_request is not None
    assert client.joined_at_first_request < 20_000


async def test_leaving_a_stream_while_its_ids_join_gives_every_other_id_as_pending() -> None:
    ids = list(range(1, 30_001))
    waiter, _, _ = make_waiter({i: ["Pending"] for i in ids}, policy=SLOW)
    stream = waiter.as_completed(ids)
    async with stream:
        await asyncio.sleep(0)  # the first chunk has joined, the rest has not
        assert waiter.stats.total < 30_000
    pending = stream.unfinished()
    assert sorted(o.export_id for o in pending) == ids  # type: ignore[type-var]
    assert {o.kind for o in pending} == {OutcomeKind.PENDING}
    await settle()
    assert other_tasks() == []


def test_a_limiter_that_cannot_book_is_refused_when_the_waiter_is_made() -> None:
    class NoBooking:
        rate = 1.0

        def on_success(self, now: float, ticket: int) -> None:
            pass

        def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
            pass

    with pytest.raises(ConfigurationError, match=r"reserve.*NoBooking"):
        ExportWaiter(GetStatusOnly(), limiter=NoBooking())  # type: ignore[arg-type]


class Forwarding:
    """A client that forwards every attribute to another (made on demand, as a proxy or a
    mock does): what it offers is seen on every Python version."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_client_whose_attributes_are_made_on_demand_is_a_client() -> None:
    inner = GetStatusOnly()
    async with ExportWaiter(Forwarding(inner), clock=VirtualClock()) as waiter:  # type: ignore[arg-type]
        report = await waiter.wait_all([1, 2])
    assert report.ok and inner.asked == [1, 2]
