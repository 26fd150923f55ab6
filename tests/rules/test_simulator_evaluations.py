"""The simulator's evaluations and V2 knobs without the network: timelines on a fake clock,
ids, seeded batches, configuration errors, and ``simulate --api``."""

from __future__ import annotations

import asyncio
import io

import pytest
from fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from qianfan_export_wait.cli import main
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.simulator import (
    V1_EVALUATION_STATES,
    V2_EVALUATION_STATES,
    FaultRates,
    Simulator,
    SimulatorConfig,
    evaluation_id_from_str,
    evaluation_id_str_for,
    run_simulator,
)
from qianfan_export_wait.simulator.evaluations import EVALUATION_OUTCOMES
from qianfan_export_wait.testing import generate_credentials

PHASE_ORDER = ["pending", "manual", "running", "metrics", "stopping"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(generate_credentials(), SimulatorConfig(seed=7), clock=clock)


# -- timelines -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    finish_after=st.floats(min_value=0.0, max_value=1e5, allow_nan=False),
    outcome=st.sampled_from(EVALUATION_OUTCOMES),
    manual=st.booleans(),
    offsets=st.lists(st.floats(min_value=0.0, max_value=2e5, allow_nan=False), max_size=30),
)
def test_an_evaluation_only_moves_forward_and_both_generations_agree(
    finish_after: float, outcome: str, manual: bool, offsets: list[float]
) -> None:
    clock = FakeClock(0.0)
    sim = Simulator(generate_credentials(), clock=clock)
    evaluation = sim.add_evaluation(finish_after, outcome, manual)  # type: ignore[arg-type]
    last_rank = -1
    for offset in sorted(offsets):
        phase = evaluation.phase_at(offset)
        finished = offset >= finish_after
        rank = len(PHASE_ORDER) if finished else PHASE_ORDER.index(phase)
        assert rank >= last_rank
        last_rank = rank
        assert finished == (phase == outcome)
        if phase == "manual":
            assert manual
        if phase == "stopping":
            assert outcome == "stopped"
        if phase == "metrics":
            assert outcome != "stopped"
        assert evaluation.state_at(offset, "v1") == V1_EVALUATION_STATES[phase]
        assert evaluation.state_at(offset, "v2") == V2_EVALUATION_STATES[phase]
        assert evaluation.exportable_at(offset) == (finished and outcome in ("done", "partly_done"))


def test_every_documented_state_of_both_generations_is_reachable() -> None:
    assert set(V1_EVALUATION_STATES.values()) == {
        "Pending",
        "Doing",
        "DoingWithManualBegin",
        "Stopping",
        "Done",
        "PartlyDone",
        "Failed",
        "Stopped",
    }
    assert set(V2_EVALUATION_STATES.values()) == {
        "Queued",
        "Running",
        "RunningWithManualBegin",
        "RunningWithMetricsCalculating",
        "Successed",
        "Stopping",
        "Failed",
        "Stopped",
    }


def test_held_evaluation_runs_until_finished_by_hand(sim: Simulator, clock: FakeClock) -> None:
    evaluation = sim.add_evaluation(None)
    clock.advance(10**6)
    assert sim.evaluation_state_of(evaluation.evaluation_id, "v2") == "Running"
    sim.finish_evaluation(evaluation.evaluation_id_str, "partly_done")
    assert sim.evaluation_state_of(evaluation.evaluation_id) == "PartlyDone"
    assert sim.evaluation_state_of(evaluation.evaluation_id, "v2") == "Successed"
    assert sim.finish_evaluation(evaluation.evaluation_id, "partly_done") is evaluation
    with pytest.raises(ValueError, match="already ended partly_done"):
        sim.finish_evaluation(evaluation.evaluation_id, "failed")


def test_unknown_outcome_is_refused_naming_it(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="'finished'"):
        sim.add_evaluation(1.0, "finished")  # type: ignore[arg-type]


# -- ids -------------------------------------------------------------------------------


def test_evaluation_ids_count_up_far_from_export_ids(sim: Simulator) -> None:
    first, second = sim.add_evaluation(), sim.add_evaluation()
    assert (first.evaluation_id, second.evaluation_id) == (1_000_001, 1_000_002)
    assert sim.evaluation(first.evaluation_id_str) is first
    with pytest.raises(KeyError):
        sim.evaluation(1)


def test_evaluation_string_ids_round_trip_and_differ_from_export_ids() -> None:
    ids = [1, 2, 1_000_001, 36**12 - 1]
    for number in ids:
        text = evaluation_id_str_for(number)
        assert text.startswith("ame-") and len(text) == 16
        assert evaluation_id_from_str(text) == number
    assert evaluation_id_from_str("amemt-" + evaluation_id_str_for(5)[4:]) is None


@pytest.mark.parametrize("bad", [True, 0, -3, 36**12, 2.0])
def test_bad_explicit_evaluation_id_is_refused(sim: Simulator, bad: object) -> None:
    with pytest.raises(ValueError, match="evaluation_id"):
        sim.add_evaluation(evaluation_id=bad)  # type: ignore[arg-type]


def test_duplicate_evaluation_id_is_refused(sim: Simulator) -> None:
    sim.add_evaluation(evaluation_id=42)
    with pytest.raises(ValueError, match="42 already exists"):
        sim.add_evaluation(evaluation_id=42)


# -- batches ---------------------------------------------------------------------------


def test_add_evaluations_ends_the_requested_shares(sim: Simulator, clock: FakeClock) -> None:
    added = sim.add_evaluations(
        200, max_seconds=50.0, fail_ratio=0.1, partly_done_ratio=0.2, stopped_ratio=0.05
    )
    outcomes = [e.outcome for e in added]
    assert {name: outcomes.count(name) for name in EVALUATION_OUTCOMES} == {
        "done": 130,
        "partly_done": 40,
        "failed": 20,
        "stopped": 10,
    }
    assert all(clock.now <= e.finish_at <= clock.now + 50.0 for e in added)
    assert len({e.finish_at for e in added}) == 200


def test_add_evaluations_is_reproducible_under_a_seed(clock: FakeClock) -> None:
    def batch(seed: int) -> list[tuple[float, str, bool]]:
        sim = Simulator(generate_credentials(), SimulatorConfig(seed=seed), clock=clock)
        added = sim.add_evaluations(50, fail_ratio=0.2, manual_ratio=0.5)
        return [(e.finish_at, e.outcome, e.manual_until > e.running_at) for e in added]

    assert batch(1) == batch(1)
    assert batch(1) != batch(2)
    assert any(manual for _, _, manual in batch(1))


def test_add_evaluations_refuses_shares_beyond_the_whole(sim: Simulator) -> None:
    with pytest.raises(ValueError, match=r"0\.6 \+ 0\.5 \+ 0"):
        sim.add_evaluations(10, fail_ratio=0.6, partly_done_ratio=0.5)
    with pytest.raises(ConfigurationError, match="manual_ratio"):
        sim.add_evaluations(10, manual_ratio=1.5)


# -- configuration ---------------------------------------------------------------------


def test_unknown_api_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="api must be 'v1', 'v2' or 'both', got 'v3'"):
        SimulatorConfig(api="v3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_export_fail_ratio", 1.5),
        ("created_export_seconds", -1.0),
        ("create_faults", 0.2),
    ],
)
def test_bad_create_knobs_are_refused_naming_them(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        SimulatorConfig(**{field: value})  # type: ignore[arg-type]


def test_create_faults_given_as_a_number_are_split_evenly(sim: Simulator) -> None:
    config = sim.configure(create_faults=0.5)
    assert config.create_faults == FaultRates.even(0.5)
    assert config.faults == FaultRates()


def test_reset_stats_keeps_the_exports_created_per_evaluation(sim: Simulator) -> None:
    evaluation = sim.add_evaluation(0)
    evaluation.export_ids.append(sim.add_export().export_id)
    evaluation.polls = 3
    sim.reset_stats()
    assert sim.creates_by_evaluation() == {evaluation.evaluation_id: 1}
    assert sim.stats.polls_by_evaluation == {}


# -- simulate --api --------------------------------------------------------------------


def test_simulate_refuses_an_unknown_api(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--api", "v3"])
    assert caught.value.code == 64
    assert "invalid choice: 'v3'" in capsys.readouterr().err


async def test_run_simulator_serves_the_chosen_api_and_evaluations() -> None:
    ready: asyncio.Future[Simulator] = asyncio.get_running_loop().create_future()
    out = io.StringIO()
    task = asyncio.create_task(
        run_simulator(
            generate_credentials(),
            exports=2,
            evaluations=3,
            api="v2",
            stream=out,
            on_ready=lambda simulator, _url: ready.set_result(simulator),
        )
    )
    try:
        simulator = await asyncio.wait_for(ready, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert simulator.config.api == "v2"
    assert sorted(simulator.evaluations) == [1_000_001, 1_000_002, 1_000_003]
    banner = out.getvalue()
    assert "API V2;" in banner
    assert "evaluations 1000001..1000003" in banner
