"""The simulator's pure parts: export schedules, ids, the QPS window, fault draws, the
signature verifier and configuration. No network."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock

from qianfan_export_wait import ConfigurationError, Credentials
from qianfan_export_wait.auth import parse_authorization, sign, uri_encode
from qianfan_export_wait.simulator import (
    FaultRates,
    Simulator,
    SimulatorConfig,
    export_id_from_str,
    export_id_str_for,
    verify_authorization,
)
from qianfan_export_wait.simulator.limits import FaultPicker, QpsWindow
from qianfan_export_wait.testing import generate_credentials

VECTOR_FILES = [
    Path(__file__).parents[2] / ".." / "shared" / "vectors" / "bce_auth_v1.json",
    Path(__file__).parents[1] / "vectors" / "bce_auth_v1_generated.json",
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(generate_credentials(), SimulatorConfig(seed=0), clock=clock)


# -- schedules ------------------------------------------------------------------------


def test_export_goes_pending_uploading_then_done_on_its_schedule(
    sim: Simulator, clock: FakeClock
) -> None:
    export = sim.add_export(finish_after=3.0, uploading_after=1.0)
    states = []
    for offset in (0.0, 0.99, 1.0, 2.99, 3.0, 1000.0):
        clock.now = export.created_at + offset
        states.append(sim.state_of(export.export_id))
    assert states == ["Pending", "Pending", "Uploading", "Uploading", "Done", "Done"]


def test_failing_export_ends_in_fail(sim: Simulator, clock: FakeClock) -> None:
    export = sim.add_export(finish_after=1.0, fail=True)
    clock.now += 1.0
    assert export.state == "Fail"


def test_finished_at_is_none_until_the_finish_time(sim: Simulator, clock: FakeClock) -> None:
    export = sim.add_export(finish_after=2.0)
    clock.now += 1.0
    assert export.finished_at is None
    clock.now += 5.0
    assert export.finished_at == export.finish_at == export.created_at + 2.0


def test_held_export_never_finishes_by_itself(sim: Simulator, clock: FakeClock) -> None:
    export = sim.add_export(finish_after=1.0)
    sim.hold(export.export_id)
    clock.now += 10**6
    assert (export.state, export.finished_at, export.held) == ("Uploading", None, True)


def test_complete_records_the_time_it_was_called(sim: Simulator, clock: FakeClock) -> None:
    export = sim.add_export(finish_after=None)
    clock.now += 4.0
    sim.complete(export.export_id_str)
    assert (export.state, export.finished_at) == ("Done", clock.now)


def test_terminal_state_cannot_be_changed_by_hand(sim: Simulator) -> None:
    export = sim.add_export(finish_after=0, fail=True)
    sim.fail(export.export_id)
    with pytest.raises(ValueError, match="terminal"):
        sim.complete(export.export_id)


def test_terminal_export_cannot_be_held(sim: Simulator) -> None:
    export = sim.add_export(finish_after=0)
    with pytest.raises(ValueError):
        sim.hold(export.export_id)


def test_ids_count_up_from_one_and_continue_after_explicit_ids(sim: Simulator) -> None:
    first = sim.add_export()
    explicit = sim.add_export(export_id=50)
    batch = sim.add_exports(3)
    assert [first.export_id, explicit.export_id] == [1, 50]
    assert [e.export_id for e in batch] == [51, 52, 53]


def test_duplicate_export_id_is_refused(sim: Simulator) -> None:
    sim.add_export(export_id=7)
    with pytest.raises(ValueError, match="exists"):
        sim.add_export(export_id=7)


def test_add_exports_spreads_finish_times_over_max_seconds(
    sim: Simulator, clock: FakeClock
) -> None:
    exports = sim.add_exports(2000, max_seconds=8.0, fail_ratio=0.0)
    delays = [e.finish_at - clock.now for e in exports]
    assert 0 <= min(delays) < 0.1
    assert 7.9 < max(delays) <= 8.0
    assert sum(delays) / len(delays) == pytest.approx(4.0, abs=0.3)
    assert all(e.created_at <= e.uploading_at <= e.finish_at for e in exports)


def test_add_exports_fails_the_requested_share(sim: Simulator) -> None:
    exports = sim.add_exports(1000, fail_ratio=0.1)
    assert Counter(e.final_state for e in exports) == {"Done": 900, "Fail": 100}


def test_add_exports_mixes_local_and_storage(sim: Simulator) -> None:
    kinds = Counter(e.export_type for e in sim.add_exports(1000))
    assert set(kinds) == {"local", "storage"}
    assert 400 < kinds["local"] < 600


def test_add_exports_is_reproducible_under_a_seed(clock: FakeClock) -> None:
    def schedule(seed: int) -> list[tuple[float, str, str]]:
        sim = Simulator(generate_credentials(), SimulatorConfig(seed=seed), clock=clock)
        return [(e.finish_at, e.final_state, e.export_type) for e in sim.add_exports(100)]

    assert schedule(1) == schedule(1)
    assert schedule(1) != schedule(2)


def test_hundred_thousand_exports_fit_in_a_few_tens_of_megabytes(clock: FakeClock) -> None:
    sim = Simulator(generate_credentials(), clock=clock)
    tracemalloc.start()
    try:
        sim.add_exports(100_000)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < 40 * 1024 * 1024
    assert sim.stats_dict()["exports"]["total"] == 100_000


def test_reset_stats_zeroes_outcomes_and_polls(sim: Simulator) -> None:
    export = sim.add_export()
    export.polls = 3
    sim.stats.record("ok")
    sim.reset_stats()
    assert (sim.stats.total_requests, sim.stats.polls_by_export) == (0, {})


def test_request_log_is_off_unless_asked_for(sim: Simulator) -> None:
    sim.stats.record("ok")
    assert sim.stats.request_log is None
    assert sim.stats_dict(include_requests=True)["request_log"] == []


def test_request_log_keeps_each_outcome_with_the_simulator_time(
    sim: Simulator, clock: FakeClock
) -> None:
    sim.stats.keep_request_log()
    sim.stats.record("ok")
    clock.now += 0.25
    sim.stats.record("throttled")
    start = clock()
    assert sim.stats_dict(include_requests=True)["request_log"] == [
        [start - 0.25, "ok"],
        [start, "throttled"],
    ]


def test_reset_stats_empties_a_kept_request_log_and_keeps_logging(sim: Simulator) -> None:
    sim.stats.keep_request_log()
    sim.stats.record("ok")
    sim.reset_stats()
    sim.stats.record("throttled")
    assert [outcome for _, outcome in sim.stats.request_log or ()] == ["throttled"]


# -- ids ------------------------------------------------------------------------------


def test_string_id_round_trips_to_the_int_id() -> None:
    rng = random.Random(0)
    ids = [*range(1, 2000), *(rng.randrange(1, 36**12) for _ in range(2000))]
    assert all(export_id_from_str(export_id_str_for(i)) == i for i in ids)


@pytest.mark.parametrize(
    "text", ["96", "amemt-", "amemt-ABCDEFGHIJKL", "amemt-abc", "ame-abcdefghijkl", ""]
)
def test_malformed_string_id_names_no_export(text: str) -> None:
    assert export_id_from_str(text) is None


def test_find_accepts_int_or_string_id_only(sim: Simulator) -> None:
    export = sim.add_export()
    table = sim.exports
    assert table[1] is export
    assert sim.export(export.export_id_str) is export
    with pytest.raises(KeyError):
        sim.export("1")


def test_export_beyond_the_scramble_range_is_found_by_string(sim: Simulator) -> None:
    big = sim.add_export(export_id=2**63 - 1)
    assert sim.export(big.export_id_str) is big


# -- QPS window and faults ------------------------------------------------------------


def test_sliding_window_never_accepts_more_than_the_limit_in_any_second() -> None:
    window = QpsWindow(3, "sliding")
    rng = random.Random(1)
    times = sorted(rng.uniform(0, 20) for _ in range(2000))
    accepted = [t for t in times if window.try_acquire(t)]
    assert all(sum(1 for a in accepted if start <= a < start + 1.0) <= 3 for start in accepted)
    assert len(accepted) >= 3 * 20 * 0.9


def test_fixed_window_resets_at_each_whole_second() -> None:
    window = QpsWindow(2, "fixed")
    outcomes = [window.try_acquire(t) for t in (5.0, 5.1, 5.9, 6.0, 6.5, 6.9)]
    assert outcomes == [True, True, False, True, True, False]


def test_rejected_requests_do_not_count_against_the_window() -> None:
    window = QpsWindow(1, "sliding")
    assert [window.try_acquire(t) for t in (0.0, 0.5, 0.9, 1.01)] == [True, False, False, True]


def test_fractional_qps_below_one_spaces_requests_out() -> None:
    window = QpsWindow.for_rate(0.5)
    assert [window.try_acquire(t) for t in (0.0, 1.5, 2.01)] == [True, False, True]


def test_fault_picker_draws_each_kind_at_its_rate() -> None:
    picker = FaultPicker(FaultRates.even(0.5), random.Random(0))
    counts = Counter(picker.draw() for _ in range(20_000))
    assert counts[None] == pytest.approx(10_000, rel=0.05)
    for kind in ("http_500", "reset", "truncated", "code_336100", "slow"):
        assert counts[kind] == pytest.approx(2_000, rel=0.1)


# -- signature verifier ---------------------------------------------------------------


def _vectors() -> list[Any]:
    loaded: list[Any] = []
    for path in VECTOR_FILES:
        if path.exists():
            loaded.extend(json.loads(path.read_text(encoding="utf-8")))
    return loaded


def _lists_every_bce_header(vector: dict[str, Any]) -> bool:
    listed = {name.strip().lower() for name in vector["headers_to_sign"] or ()}
    names = {
        name.strip().lower() for name, value in vector["headers"].items() if str(value).strip()
    }
    return not listed or all(n in listed for n in names if n.startswith("x-bce-"))


VERIFIABLE = _vectors()


def test_vectors_include_signatures_over_unlisted_bce_headers() -> None:
    # Baidu's signer also signs x-bce-* headers it does not list; the verifier must
    # accept those signatures as well, or a client built on bce-python-sdk would fail.
    assert not VERIFIABLE or any(not _lists_every_bce_header(v) for v in VERIFIABLE)


@pytest.mark.skipif(not VERIFIABLE, reason="no bce-auth-v1 vectors found")
def test_verifier_accepts_every_known_good_signature() -> None:
    for vector in VERIFIABLE:
        issued = parse_authorization(vector["authorization"]).issued_at.timestamp()
        failure = verify_authorization(
            Credentials(vector["access_key"], vector["secret_key"]),
            method=vector["method"],
            raw_path=uri_encode(vector["path"], keep_slash=True),
            query=vector["query"],
            headers={**vector["headers"], "Authorization": vector["authorization"]},
            now=issued,
        )
        assert failure is None, (vector.get("note"), failure)


def test_verifier_rejects_a_signature_one_second_past_its_expiration() -> None:
    credentials = generate_credentials()
    headers = {"Host": "localhost", "x-bce-date": "2024-01-04T03:20:30Z"}
    headers["Authorization"] = sign(
        credentials,
        method="POST",
        path="/p",
        headers=headers,
        timestamp="2024-01-04T03:20:30Z",
        expiration_seconds=60,
        headers_to_sign=("host", "x-bce-date"),
    )
    issued = 1704338430
    common: dict[str, Any] = {"method": "POST", "raw_path": "/p", "query": {}, "headers": headers}
    assert verify_authorization(credentials, now=issued + 60, **common) is None
    failure = verify_authorization(credentials, now=issued + 61, **common)
    assert failure is not None and failure.bce_error_code == "RequestExpired"


def test_auth_failure_messages_never_contain_the_secret_key() -> None:
    credentials = Credentials("ak-visible", "sk-must-not-appear")
    wrong = Credentials("ak-visible", "another")
    headers = {"Host": "localhost"}
    headers["Authorization"] = sign(
        wrong, method="POST", path="/p", headers=headers, headers_to_sign=("host",)
    )
    failure = verify_authorization(
        credentials,
        method="POST",
        raw_path="/p",
        query={},
        headers=headers,
        now=time.time(),
    )
    assert failure is not None and failure.bce_error_code == "SignatureDoesNotMatch"
    assert "sk-must-not-appear" not in repr(failure)


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"qps": 0},
        {"qps": -1},
        {"slow_delay": -1.0},
        {"retry_after": -2.0},
        {"qps_window": "leaky"},
        {"seed": "zero"},
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SimulatorConfig(**changes)


def test_fault_rates_above_one_in_total_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        FaultRates(http_500=0.6, reset=0.6)


def test_combined_fault_rate_is_split_evenly() -> None:
    rates = FaultRates.even(0.5)
    assert rates.as_dict() == dict.fromkeys(rates.as_dict(), 0.1)


def test_configure_accepts_a_combined_fault_rate(sim: Simulator) -> None:
    config = sim.configure(faults=0.25, clock_skew=-900.0)
    assert config.faults == FaultRates.even(0.25)
    assert sim.config.clock_skew == -900.0


def test_simulator_repr_hides_the_secret_key() -> None:
    credentials = Credentials("visible-ak", "hidden-secret-key")
    assert "hidden-secret-key" not in repr(Simulator(credentials))
