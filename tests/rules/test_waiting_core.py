"""The scheduling core on its own: no event loop, no clock, every time passed in.

Each test drives ``Scheduler`` the way the driver does: ``take`` what is due, report an
answer with ``answer``, and ``expire`` deadlines; then it checks who got which outcome."""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statuses import make_status
from tenacity import RetryCallState, wait_fixed
from tenacity.wait import wait_base

from qianfan_export_wait import (
    AuthError,
    InvalidRequestError,
    OutcomeKind,
    PollPolicy,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
    UnexpectedError,
)
from qianfan_export_wait.models import parse_export_status
from qianfan_export_wait.waiting.core import (
    OUTAGE_AFTER_FAILURES,
    Caller,
    DueQueue,
    Entry,
    Scheduler,
)
from qianfan_export_wait.waiting.outcomes import ExportOutcome, WaiterEvent
from qianfan_export_wait.waiting.packing import StatusPacker
from qianfan_export_wait.waiting.policy import PROBE_MAX_DELAY, Schedule

INF = float("inf")


class Recorder(Caller):
    """A caller that keeps what it is given."""

    __slots__ = ("aborted", "joined", "outcomes")

    def __init__(self, started: float = 0.0, deadline: float = INF) -> None:
        super().__init__(started, deadline)
        self.joined: list[Entry] = []
        self.outcomes: list[ExportOutcome] = []
        self.aborted: BaseException | None = None

    def deliver(self, outcome: ExportOutcome) -> None:
        self.outcomes.append(outcome)

    def abort(self, error: BaseException) -> None:
        self.aborted = error

    def entries(self) -> Iterable[Entry]:
        return self.joined

    def kind_of(self, export_id: int) -> OutcomeKind:
        (kind,) = [outcome.kind for outcome in self.outcomes if outcome.export_id == export_id]
        return kind


def subscribe(core: Scheduler, caller: Recorder, ids: Iterable[int], now: float = 0.0) -> None:
    for export_id in ids:
        caller.joined.append(core.join(caller, export_id, now))
    core.watch(caller)


def scheduler(**policy: Any) -> tuple[Scheduler, list[WaiterEvent]]:
    events: list[WaiterEvent] = []
    options = {"min_delay": 1.0, "max_delay": 10.0, "timeout": None, "wait": wait_fixed(10)}
    options.update(policy)
    return Scheduler(PollPolicy(**options), notify=events.append), events


def take_all(core: Scheduler, now: float) -> list[Entry]:
    taken = []
    while (entry := core.take(now)) is not None:
        taken.append(entry)
    return taken


FLAKY = TransientError("HTTP 502", http_status=502)
THROTTLED = ThrottledError("Open api qps request limit reached", code=18)


# -- the due queue --------------------------------------------------------------------------


def test_due_queue_gives_entries_in_due_order_and_never_early() -> None:
    queue = DueQueue(0.0)
    caller = Recorder()
    late, early = Entry(1, caller), Entry(2, caller)
    queue.push(late, 5.0)
    queue.push(early, 2.0)
    assert queue.ready_at() == 2.0
    assert queue.pop(1.9) is None
    assert queue.pop(2.0) is early
    assert queue.pop(4.0) is None
    assert queue.pop(5.0) is late
    assert not queue


def test_due_queue_buckets_share_a_wake_up_at_the_end_of_their_window() -> None:
    queue = DueQueue(0.05)
    caller = Recorder()
    entries = [Entry(i, caller) for i in range(3)]
    for entry, due in zip(entries, (1.001, 1.02, 1.049), strict=True):
        queue.push(entry, due)
    assert queue.ready_at() == pytest.approx(1.05)  # the window's end: none is sent early
    assert queue.pop(1.049) is None
    assert [queue.pop(1.05) for _ in range(3)] == entries


def test_a_moved_or_discarded_entry_is_given_once_at_its_new_time() -> None:
    queue = DueQueue(0.0)
    caller = Recorder()
    moved, gone = Entry(1, caller), Entry(2, caller)
    queue.push(moved, 1.0)
    queue.push(gone, 1.0)
    queue.push(moved, 3.0)
    queue.push(moved, 1.0)  # back to the first bucket: still only one copy is live
    queue.discard(gone)
    assert queue.pop(2.0) is moved
    assert queue.pop(10.0) is None


def test_pop_earliest_ignores_the_time() -> None:
    queue = DueQueue(0.0)
    entry = Entry(1, Recorder())
    queue.push(entry, 100.0)
    assert queue.pop(0.0) is None
    assert queue.pop_earliest() is entry


# -- callers share exports ---------------------------------------------------------------------


def test_callers_of_one_id_share_its_polls_and_get_the_same_outcome() -> None:
    core, _ = scheduler()
    first, second = Recorder(), Recorder(started=3.0)
    subscribe(core, first, [7])
    subscribe(core, second, [7], now=3.0)
    (entry,) = take_all(core, 3.0)
    core.answer(entry, make_status(7, "Done"), 4.0)
    assert core.requests == 1
    assert (
        [o.kind for o in first.outcomes] == [o.kind for o in second.outcomes] == [OutcomeKind.DONE]
    )
    assert (first.outcomes[0].elapsed, second.outcomes[0].elapsed) == (4.0, 1.0)
    assert first.closed and second.closed and core.callers == 0


def test_a_caller_that_leaves_ends_only_its_own_wait() -> None:
    core, _ = scheduler()
    staying, leaving = Recorder(), Recorder()
    subscribe(core, staying, [7])
    subscribe(core, leaving, [7])
    assert core.leave(leaving) == []
    (entry,) = take_all(core, 0.0)
    core.answer(entry, make_status(7, "Done"), 1.0)
    assert staying.kind_of(7) is OutcomeKind.DONE
    assert leaving.outcomes == []


def test_an_export_nobody_waits_for_is_polled_no_more() -> None:
    core, _ = scheduler()
    caller = Recorder()
    subscribe(core, caller, [7, 8])
    polled = take_all(core, 0.0)
    assert core.leave(caller) == polled  # both in flight: the driver cancels them
    assert core.entries == {}
    assert take_all(core, 100.0) == []
    assert core.counts[OutcomeKind.PENDING] == 2


def test_a_caller_with_an_earlier_deadline_gets_a_last_poll_at_it() -> None:
    core, _ = scheduler()
    patient, hurried = Recorder(), Recorder(deadline=4.0)
    subscribe(core, patient, [7])
    (entry,) = take_all(core, 0.0)
    core.answer(entry, make_status(7, "Pending"), 0.0)  # next poll at 10
    subscribe(core, hurried, [7], now=1.0)
    assert core.ready_at() == 4.0
    (entry,) = take_all(core, 4.0)
    core.answer(entry, make_status(7, "Uploading"), 4.0)
    assert hurried.kind_of(7) is OutcomeKind.TIMEOUT
    assert hurried.outcomes[0].status is not None
    assert hurried.outcomes[0].status.state_name == "Uploading"
    assert patient.outcomes == []
    assert take_all(core, 13.9) == []
    assert take_all(core, 14.0) == [entry]  # the patient caller's schedule goes on


# -- deadlines hold ----------------------------------------------------------------------------


def test_a_queued_export_ends_at_its_deadline_without_being_polled() -> None:
    core, _ = scheduler()
    caller = Recorder(deadline=20.0)
    subscribe(core, caller, [1, 2])
    (first,) = [core.take(0.0)]  # only one slot: export 2 stays queued
    assert first is not None
    core.expire(20.0)
    assert caller.kind_of(2) is OutcomeKind.TIMEOUT
    assert caller.outcomes[0].polls == 0
    assert [o.export_id for o in caller.outcomes] == [2]  # 1 is in flight: its answer decides


def test_an_answer_after_the_deadline_ends_the_wait_even_when_throttled() -> None:
    core, _ = scheduler()
    caller = Recorder(deadline=20.0)
    subscribe(core, caller, [1])
    (entry,) = take_all(core, 19.0)
    core.expire(20.0)
    assert caller.outcomes == []
    core.answer(entry, THROTTLED, 20.5)
    assert caller.kind_of(1) is OutcomeKind.TIMEOUT
    assert core.entries == {}


def test_retry_after_never_carries_past_the_deadline() -> None:
    core, _ = scheduler()
    caller = Recorder(deadline=10.0)
    subscribe(core, caller, [1])
    (entry,) = take_all(core, 0.0)
    core.answer(entry, ThrottledError("slow down", code=18, retry_after=3600.0), 1.0)
    assert core.ready_at() == 10.0


def test_the_poll_schedule_is_cut_to_one_last_poll_at_the_deadline() -> None:
    core, _ = scheduler()
    caller = Recorder(deadline=15.0)
    subscribe(core, caller, [1])
    (entry,) = take_all(core, 0.0)
    core.answer(entry, make_status(1, "Pending"), 0.0)
    assert core.ready_at() == 10.0
    (entry,) = take_all(core, 10.0)
    core.answer(entry, make_status(1, "Pending"), 10.0)
    assert core.ready_at() == 15.0


# -- outcomes of answers -------------------------------------------------------------------------


def test_state_changes_are_reported_once_each_then_the_outcome() -> None:
    core, events = scheduler()
    caller = Recorder()
    subscribe(core, caller, [1])
    for now, state in ((0, "Pending"), (10, "Pending"), (20, "Uploading"), (30, "Fail")):
        (entry,) = take_all(core, now)
        core.answer(entry, make_status(1, state), now)
    assert [(getattr(e, "previous", None), getattr(e, "state", None)) for e in events[:2]] == [
        (None, "Pending"),
        ("Pending", "Uploading"),
    ]
    assert isinstance(events[-1], ExportOutcome) and events[-1].kind is OutcomeKind.FAILED


def test_an_unknown_id_ends_as_error_and_the_others_go_on() -> None:
    core, _ = scheduler()
    caller = Recorder()
    subscribe(core, caller, [1, 2])
    one, _two = take_all(core, 0.0)
    unknown = InvalidRequestError("param invalid", code=500001)
    core.answer(one, unknown, 0.0)
    assert caller.outcomes[0].error is unknown
    assert list(core.entries) == [2]


def test_an_auth_error_ends_every_export_and_is_remembered() -> None:
    core, _ = scheduler()
    caller, other = Recorder(), Recorder()
    subscribe(core, caller, [1, 2, 3])
    subscribe(core, other, [4])
    denied = AuthError("SignatureDoesNotMatch", http_status=401)
    (first,) = [core.take(0.0)]
    assert first is not None
    core.answer(first, denied, 0.0)
    assert {o.error for o in [*caller.outcomes, *other.outcomes]} == {denied}
    assert core.auth_error is denied and core.entries == {}


def test_an_unexpected_exception_ends_only_that_export_as_error() -> None:
    core, _ = scheduler()
    caller = Recorder()
    subscribe(core, caller, [1, 2])
    one, _two = take_all(core, 0.0)
    core.answer(one, RuntimeError("Session is closed"), 0.0)
    error = caller.outcomes[0].error
    assert isinstance(error, UnexpectedError)
    assert isinstance(error.__cause__, RuntimeError)
    assert "Session is closed" in str(error)
    assert list(core.entries) == [2]


# -- outages -----------------------------------------------------------------------------------


def fail_in_a_row(core: Scheduler, now: float, count: int) -> None:
    for _ in range(count):
        entry = core.take(now)
        assert entry is not None
        core.answer(entry, FLAKY, now)


def test_failures_across_the_board_become_one_outage_with_a_single_probe() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(1))
    subscribe(core, Recorder(), range(1, 101))
    fail_in_a_row(core, 0.0, OUTAGE_AFTER_FAILURES)
    assert core.outage is not None
    assert core.take(0.5) is None  # everything waits for the probe's backoff
    probe = core.take(1.0)
    assert probe is not None
    assert core.take(1.0) is None  # one probe at a time
    core.answer(probe, FLAKY, 1.0)
    assert core.ready_at() == 2.0


def test_the_probe_backoff_is_capped_at_a_few_seconds() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(60))
    subscribe(core, Recorder(), range(1, 20))
    fail_in_a_row(core, 0.0, OUTAGE_AFTER_FAILURES)
    assert core.ready_at() == PROBE_MAX_DELAY


def test_when_the_service_answers_again_every_export_that_saw_errors_is_due_at_once() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(30))
    caller = Recorder()
    subscribe(core, caller, range(1, 21))
    fail_in_a_row(core, 0.0, OUTAGE_AFTER_FAILURES)
    probe = core.take(PROBE_MAX_DELAY)
    assert probe is not None
    core.answer(probe, make_status(probe.export_id, "Pending"), 6.0)
    assert core.outage is None
    due_now = take_all(core, 6.0)
    # The 7 others that failed (their retry was due at 30) and the 12 never polled.
    assert len(due_now) == 19


def test_an_outage_longer_than_max_unavailable_ends_exports_as_unavailable() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(1), max_unavailable=60.0)
    caller = Recorder()
    subscribe(core, caller, range(1, 31))
    fail_in_a_row(core, 0.0, OUTAGE_AFTER_FAILURES)
    now = 0.0
    while core.entries and now < 200:
        now += 1.0
        probe = core.take(now)
        if probe is not None:
            core.answer(probe, FLAKY, now)
    assert core.entries == {}
    assert now <= 61.0
    assert all(o.kind is OutcomeKind.ERROR for o in caller.outcomes)
    assert all(isinstance(o.error, ServiceUnavailableError) for o in caller.outcomes)
    assert all(o.unavailable for o in caller.outcomes)


def test_a_timeout_during_an_outage_says_the_service_was_unavailable() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(1))
    caller = Recorder(deadline=30.0)
    subscribe(core, caller, range(1, 11))
    fail_in_a_row(core, 0.0, OUTAGE_AFTER_FAILURES)
    core.expire(30.0)
    assert {o.kind for o in caller.outcomes} == {OutcomeKind.TIMEOUT}
    assert all(isinstance(o.error, ServiceUnavailableError) for o in caller.outcomes)


def test_scattered_faults_between_answers_are_not_an_outage() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(1))
    subscribe(core, Recorder(), range(1, 1001))
    now = 0.0
    for step in range(400):
        entry = core.take(now)
        assert entry is not None
        if step % 3 == 2:
            core.answer(entry, make_status(entry.export_id, "Pending"), now)
        else:
            core.answer(entry, FLAKY, now)
    assert core.outage is None


def test_a_single_export_failing_alone_ends_after_max_unavailable_seconds() -> None:
    core, _ = scheduler(retry_wait=wait_fixed(2), max_unavailable=30.0)
    caller = Recorder()
    subscribe(core, caller, [1])
    now = 0.0
    while core.entries:
        entry = core.take(now)
        if entry is not None:
            core.answer(entry, FLAKY, now)
        now += 1.0
    assert isinstance(caller.outcomes[0].error, ServiceUnavailableError)
    assert caller.outcomes[0].error.last_error is FLAKY
    assert 30.0 <= now <= 33.0


# -- schedules call tenacity as tenacity does --------------------------------------------------


class ReadsTheOutcome(wait_base):
    """Polls a Pending export slowly and an Uploading one fast; says how long it has run."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, float | None]] = []

    def __call__(self, retry_state: RetryCallState) -> float:
        assert retry_state.outcome is not None
        state = retry_state.outcome.result().state_name
        self.seen.append((retry_state.attempt_number, state, retry_state.seconds_since_start))
        return 20.0 if state == "Pending" else 2.0


def test_a_strategy_gets_a_real_retry_call_state_with_outcome_and_elapsed_time() -> None:
    strategy = ReadsTheOutcome()
    core, _ = scheduler(wait=strategy)
    subscribe(core, Recorder(started=100.0), [1], now=100.0)
    for now, state in ((100.0, "Pending"), (120.0, "Uploading")):
        (entry,) = take_all(core, now)
        core.answer(entry, make_status(1, state), now)
    assert strategy.seen == [(1, "Pending", 0.0), (2, "Uploading", 20.0)]
    assert core.ready_at() == 122.0


def test_a_retry_strategy_sees_the_exception() -> None:
    seen: list[BaseException | None] = []

    def strategy(retry_state: RetryCallState) -> float:
        assert retry_state.outcome is not None
        seen.append(retry_state.outcome.exception())
        return 3.0

    schedule = Schedule(strategy)  # type: ignore[arg-type]
    assert schedule.delay(1, started=0.0, now=1.0, error=FLAKY) == 3.0
    assert seen == [FLAKY]


def test_negative_or_nan_delays_count_as_zero() -> None:
    assert Schedule(lambda state: -5.0).delay(1, started=0, now=0) == 0.0  # type: ignore[arg-type]
    nan = float("nan")
    assert Schedule(lambda state: nan).delay(1, started=0, now=0) == 0.0  # type: ignore[arg-type]


# -- life counts -------------------------------------------------------------------------------


def test_counts_cover_the_whole_life_one_per_export() -> None:
    core, _ = scheduler()
    for round_ in range(3):
        caller = Recorder()
        subscribe(core, caller, [1, 2], now=float(round_))
        for entry in take_all(core, float(round_)):
            core.answer(entry, make_status(entry.export_id, "Done"), float(round_))
    assert core.total == 6 and core.counts[OutcomeKind.DONE] == 6
    assert core.requests == 6 and core.entries == {} and core.callers == 0


def test_finished_callers_do_not_pile_up_in_the_deadline_heap() -> None:
    core, _ = scheduler()
    for number in range(5000):
        caller = Recorder(started=float(number), deadline=float(number) + 3600.0)
        subscribe(core, caller, [number + 1], now=float(number))
        (entry,) = take_all(core, float(number))
        core.answer(entry, make_status(number + 1, "Done"), float(number))
    assert len(core.book._deadlines) <= 2000
    assert core.next_deadline() == INF


# -- the packed last status of a large wait -----------------------------------------------------

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=80)
)
_RESULTS = st.dictionaries(st.text(max_size=12), _VALUES, max_size=8).map(
    lambda extra: {**extra, "exportID": 7, "state": "Uploading"}
)


@given(first=_RESULTS, result=_RESULTS, log_id=st.one_of(st.none(), st.text(max_size=64)))
def test_a_packed_status_unpacks_to_the_same_status(
    first: dict[str, Any], result: dict[str, Any], log_id: str | None
) -> None:
    packer = StatusPacker()
    packer.pack(parse_export_status({"log_id": "1", "result": first}))  # sets the dictionary
    status = parse_export_status({"log_id": log_id, "result": result})
    unpacked = packer.unpack(packer.pack(status))
    assert unpacked == status and dict(unpacked.raw) == dict(status.raw)
    assert unpacked.log_id == status.log_id


def test_a_new_log_id_is_swapped_in_without_repacking() -> None:
    packer = StatusPacker()
    status = make_status(7, "Pending", exportPath="a/b.csv")
    packed = packer.with_log_id(packer.pack(status), "2024")
    assert packer.unpack(packed).log_id == "2024"
    assert dict(packer.unpack(packed).raw) == dict(status.raw)


def test_statuses_alike_pack_to_far_less_than_their_marshalled_values() -> None:
    packer = StatusPacker()
    sizes = []
    for n in range(1, 50):
        result = {
            "id": 300 + n,
            "idStr": f"ame-{n:08d}",
            "exportID": n,
            "exportIDStr": f"amemt-{n:012d}",
            "state": "Pending",
            "exportType": "local",
            "volumeId": "",
            "exportPath": f"qianfan_modelrepo_offline/workspace/model_eval_result_export/x_{n}.csv",
            "downloadUrl": "",
        }
        sizes.append(len(packer.pack(parse_export_status({"log_id": str(n), "result": result}))))
    marshalled = len(marshal.dumps(tuple(result.values())))
    assert max(sizes[1:]) < marshalled / 2
