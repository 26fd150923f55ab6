"""The simulator's evaluations, creates and V2 calls over real HTTP on 127.0.0.1, with
really signed requests: states of both generations, creates that start exports, V2 error
shapes, the signed ``Action`` query, throttling and faults on every call."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim_v2_support import (
    SIGNED,
    V1_CREATE,
    V1_EVALUATION,
    V1_EXPORT_STATUS,
    V2_EVAL,
    FakeClock,
    Reply,
    Running,
    running_simulator,
)
from yarl import URL

from qianfan_export_wait.auth import Credentials, canonical_time, sign
from qianfan_export_wait.client import host_header
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.simulator.exports import VOLUME_ID
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan_in_thread


@pytest.fixture
async def sim() -> AsyncIterator[Running]:
    async with running_simulator(seed=3) as running:
        yield running


def assert_v2_error(reply: Reply, status: int, code: str) -> str:
    assert reply.status == status, reply.payload
    assert set(reply.payload) == {"requestId", "code", "message"}, reply.payload
    assert reply.payload["code"] == code
    assert isinstance(reply.payload["requestId"], str) and reply.payload["requestId"]
    assert reply.headers["X-Bce-Request-Id"] == reply.payload["requestId"]
    message = reply.payload["message"]
    assert isinstance(message, str) and message
    return message


def assert_v1_error(reply: Reply, code: int) -> str:
    assert reply.status == 200
    assert reply.payload["error_code"] == code, reply.payload
    assert "result" not in reply.payload
    message = reply.payload["error_msg"]
    assert isinstance(message, str)
    return message


# -- evaluations through both generations ----------------------------------------------

# Moments along a 10 s run (queued to 2 s, manual start to 4 s if any, the last 2 s
# calculating metrics or stopping), and the V1 and V2 states at each.
TIMELINES = {
    ("done", False): [
        (1, "Pending", "Queued"),
        (5, "Doing", "Running"),
        (9, "Doing", "RunningWithMetricsCalculating"),
        (10, "Done", "Successed"),
    ],
    ("partly_done", True): [
        (1, "Pending", "Queued"),
        (3, "DoingWithManualBegin", "RunningWithManualBegin"),
        (5, "Doing", "Running"),
        (10, "PartlyDone", "Successed"),
    ],
    ("failed", False): [(5, "Doing", "Running"), (11, "Failed", "Failed")],
    ("stopped", False): [
        (5, "Doing", "Running"),
        (9, "Stopping", "Stopping"),
        (12, "Stopped", "Stopped"),
    ],
}


@pytest.mark.parametrize(("outcome", "manual"), list(TIMELINES), ids=str)
async def test_one_evaluation_is_seen_through_both_generations_with_mapped_states(
    sim: Running, outcome: str, manual: bool
) -> None:
    evaluation = sim.simulator.add_evaluation(10.0, outcome, manual)  # type: ignore[arg-type]
    start = sim.clock.now
    for at, v1_state, v2_state in TIMELINES[(outcome, manual)]:
        sim.clock.now = start + at
        v1 = await sim.v1_evaluation(evaluation.evaluation_id)
        v2 = await sim.v2_evaluation(evaluation.evaluation_id_str)
        assert v1.status == v2.status == 200
        assert set(v1.payload) == {"log_id", "result"}
        assert set(v2.payload) == {"requestId", "result"}
        assert v1.payload["result"]["id"] == evaluation.evaluation_id
        assert v1.payload["result"]["idStr"] == evaluation.evaluation_id_str
        assert v2.payload["result"]["taskId"] == evaluation.evaluation_id_str
        assert (v1.payload["result"]["state"], v2.payload["result"]["state"]) == (
            v1_state,
            v2_state,
        ), at


async def test_evaluation_ids_are_typed_per_generation(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    assert_v1_error(await sim.v1_evaluation(evaluation.evaluation_id_str), 500001)
    message = assert_v2_error(
        await sim.v2_evaluation(evaluation.evaluation_id), 400, "InvalidParameter"
    )
    assert str(evaluation.evaluation_id) in message


async def test_unknown_evaluation_is_404_in_v2_and_code_500001_in_v1(sim: Running) -> None:
    message = assert_v2_error(await sim.v2_evaluation("ame-000000000000"), 404, "ResourceNotFound")
    assert "ame-000000000000" in message
    assert_v1_error(await sim.v1_evaluation(424242), 500001)


async def test_evaluation_polls_are_counted(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    await sim.v1_evaluation(evaluation.evaluation_id)
    await sim.v2_evaluation(evaluation.evaluation_id_str)
    assert sim.simulator.stats.polls_by_evaluation == {evaluation.evaluation_id: 2}
    calls = sim.simulator.stats.requests_by_call
    assert calls["v1.evaluation_status"] == calls["v2.evaluation_status"] == 1


# -- creates ---------------------------------------------------------------------------


async def test_v2_create_starts_an_export_whose_file_downloads(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    created = await sim.v2_create(evaluation.evaluation_id_str)
    assert created.status == 200
    assert set(created.payload) == {"requestId", "result"}
    task_id = created.payload["result"]["taskId"]
    assert task_id.startswith("amemt-")
    export = sim.simulator.export(task_id)
    assert export.evaluation_id == evaluation.evaluation_id

    queued = (await sim.v2_export(task_id)).payload["result"]
    assert queued["state"] == "Queued"
    assert queued["downloadUrl"] == ""
    assert queued["evalId"] == evaluation.evaluation_id_str
    assert queued["storageType"] == "sysStorage"
    assert queued["exportContent"] == ["prompt", "prediction", "completion", "metrics", "system"]

    sim.clock.advance(sim.simulator.config.created_export_seconds)
    done = (await sim.v2_export(task_id)).payload["result"]
    assert done["state"] == "Succeeded"
    async with sim.session.get(URL(done["downloadUrl"], encoded=True)) as response:
        assert response.status == 200
        body = await response.read()
    assert hashlib.sha256(body).hexdigest() == sim.simulator.file_of(task_id).digest().sha256_hex


async def test_v2_bos_export_names_its_full_path_and_the_object_is_served(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    created = await sim.v2_create(evaluation.evaluation_id_str, storageType="BOS", bucket=VOLUME_ID)
    task_id = created.payload["result"]["taskId"]
    sim.clock.advance(sim.simulator.config.created_export_seconds)
    result = (await sim.v2_export(task_id)).payload["result"]
    assert result["state"] == "Succeeded"
    assert result["storageType"] == "BOS"
    assert result["downloadUrl"] == ""
    bucket, _, key = result["storagePath"].removeprefix("bos:/").partition("/")
    assert bucket == VOLUME_ID
    headers = {"Host": host_header(URL(sim.base_url)), "x-bce-date": canonical_time(None)}
    path = f"/{bucket}/{key}"
    headers["Authorization"] = sign(
        sim.credentials, method="GET", path=path, headers=headers, headers_to_sign=("host",)
    )
    async with sim.session.get(sim.base_url + path, headers=headers) as response:
        assert response.status == 200
        body = await response.read()
    assert hashlib.sha256(body).hexdigest() == sim.simulator.file_of(task_id).digest().sha256_hex


async def test_v1_create_answers_both_ids_and_the_export_is_seen_by_both_generations(
    sim: Running,
) -> None:
    evaluation = sim.simulator.add_evaluation(0, "partly_done")
    created = await sim.v1_create(
        evaluation.evaluation_id, exportType="storage", volumeId=VOLUME_ID
    )
    result = created.payload["result"]
    assert set(created.payload) == {"log_id", "result"}
    export = sim.simulator.export(result["exportID"])
    assert result["exportIDStr"] == export.export_id_str
    v1 = (await sim.v1_export(result["exportID"])).payload["result"]
    assert (v1["id"], v1["idStr"]) == (evaluation.evaluation_id, evaluation.evaluation_id_str)
    assert (v1["exportType"], v1["volumeId"]) == ("storage", VOLUME_ID)
    v2 = (await sim.v2_export(result["exportIDStr"])).payload["result"]
    assert v2["taskId"] == result["exportIDStr"]
    assert v2["storageType"] == "BOS"


@pytest.mark.parametrize("generation", ["v1", "v2"])
@pytest.mark.parametrize(
    ("finish_after", "outcome"), [(60.0, "done"), (0.0, "failed"), (0.0, "stopped")]
)
async def test_create_for_an_evaluation_that_is_not_finished_well_is_refused(
    sim: Running, generation: str, finish_after: float, outcome: str
) -> None:
    evaluation = sim.simulator.add_evaluation(finish_after, outcome)  # type: ignore[arg-type]
    if generation == "v1":
        message = assert_v1_error(await sim.v1_create(evaluation.evaluation_id), 500001)
    else:
        reply = await sim.v2_create(evaluation.evaluation_id_str)
        message = assert_v2_error(reply, 400, "InvalidParameter")
    state = evaluation.state_at(sim.clock.now, generation)  # type: ignore[arg-type]
    assert state in message
    assert sim.simulator.creates_by_evaluation() == {}
    assert len(sim.simulator.exports) == 0


V1_BAD_BODIES = [
    ({"exportType": "cloud"}, "'cloud'"),
    ({"exportOpt": "some"}, "'some'"),
    ({"exportContent": []}, "exportContent"),
    ({"exportContent": ["prompt", "system"]}, "'system'"),
    ({"exportType": "storage"}, "volumeId None"),
    ({"exportType": "storage", "volumeId": "not-mine"}, "'not-mine'"),
    ({"exportOpt": "part"}, "resultIds"),
    ({"exportOpt": "part", "resultIds": ["r"] * 101}, "resultIds"),
]


@pytest.mark.parametrize(("fields", "named"), V1_BAD_BODIES, ids=str)
async def test_v1_create_with_a_bad_field_is_refused_naming_it(
    sim: Running, fields: dict[str, object], named: str
) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    message = assert_v1_error(await sim.v1_create(evaluation.evaluation_id, **fields), 500001)
    assert named in message
    assert sim.simulator.creates_by_evaluation() == {}


V2_BAD_BODIES = [
    ({"storageType": "local"}, "'local'"),
    ({"exportContent": "prompt"}, "exportContent"),
    ({"exportContent": ["everything"]}, "'everything'"),
    ({"storageType": "BOS"}, "bucket None"),
    ({"storageType": "BOS", "bucket": "not-mine"}, "'not-mine'"),
    ({"evalId": 1000001}, "evalId"),
]


@pytest.mark.parametrize(("fields", "named"), V2_BAD_BODIES, ids=str)
async def test_v2_create_with_a_bad_field_is_refused_naming_it(
    sim: Running, fields: dict[str, object], named: str
) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    reply = await sim.v2_create(evaluation.evaluation_id_str, **fields)
    assert named in assert_v2_error(reply, 400, "InvalidParameter")
    assert sim.simulator.creates_by_evaluation() == {}


async def test_v2_create_for_an_unknown_evaluation_is_404(sim: Running) -> None:
    assert_v2_error(await sim.v2_create("ame-000000000000"), 404, "ResourceNotFound")
    assert_v1_error(await sim.v1_create(1), 500001)


async def test_v2_create_defaults_to_sys_storage(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    body = {"evalId": evaluation.evaluation_id_str, "exportContent": ["metrics"]}
    created = await sim.post(V2_EVAL, body, action="CreateEvalResultExportTask")
    export = sim.simulator.export(created.payload["result"]["taskId"])
    assert export.export_type == "local"
    assert export.export_content == ("metrics",)


async def test_every_create_is_counted_per_evaluation(sim: Running) -> None:
    first, second = sim.simulator.add_evaluation(0), sim.simulator.add_evaluation(0)
    await sim.v1_create(first.evaluation_id)
    await sim.v2_create(first.evaluation_id_str)
    await sim.v2_create(second.evaluation_id_str)
    assert sim.simulator.creates_by_evaluation() == {
        first.evaluation_id: 2,
        second.evaluation_id: 1,
    }
    sim.simulator.reset_stats()  # the server's exports are not a counter
    summary = sim.simulator.stats_dict()["evaluations"]
    assert (summary["exports_created"], summary["with_more_than_one_export"]) == (3, 1)
    assert len(first.export_ids) == 2


async def test_created_exports_follow_a_timeline_seeded_by_evaluation_not_by_order() -> None:
    finish_times = []
    for order in ([0, 1, 2], [2, 0, 1]):
        async with running_simulator(seed=5, created_export_seconds=30.0) as sim:
            evaluations = [sim.simulator.add_evaluation(0) for _ in range(3)]
            for index in order:
                await sim.v2_create(evaluations[index].evaluation_id_str)
            finish_times.append(
                {
                    e.evaluation_id: sim.simulator.export(e.export_ids[0]).finish_at
                    for e in evaluations
                }
            )
    assert finish_times[0] == finish_times[1]
    assert len(set(finish_times[0].values())) == 3


async def test_created_exports_fail_at_the_configured_ratio() -> None:
    async with running_simulator(seed=2, created_export_fail_ratio=1.0) as sim:
        evaluation = sim.simulator.add_evaluation(0)
        task_id = (await sim.v2_create(evaluation.evaluation_id_str)).payload["result"]["taskId"]
        sim.clock.advance(sim.simulator.config.created_export_seconds)
        assert (await sim.v2_export(task_id)).payload["result"]["state"] == "Failed"
        assert (await sim.v1_export(task_id)).payload["result"]["state"] == "Fail"


# -- V2 export status ------------------------------------------------------------------


async def test_v2_export_status_maps_every_state(sim: Running) -> None:
    export = sim.simulator.add_export(finish_after=10.0, uploading_after=5.0)
    failing = sim.simulator.add_export(finish_after=10.0, fail=True)
    seen = []
    for _ in range(3):
        seen.append((await sim.v2_export(export.export_id_str)).payload["result"]["state"])
        sim.clock.advance(5.0)
    assert seen == ["Queued", "Running", "Succeeded"]
    assert (await sim.v2_export(failing.export_id_str)).payload["result"]["state"] == "Failed"


async def test_v2_export_status_wants_a_string_task_id(sim: Running) -> None:
    export = sim.simulator.add_export()
    assert_v2_error(await sim.v2_export(export.export_id), 400, "InvalidParameter")
    assert_v2_error(await sim.v2_export("amemt-000000000000"), 404, "ResourceNotFound")
    reply = await sim.post(V2_EVAL, {}, action="DescribeEvalResultExportTask")
    assert "taskId" in assert_v2_error(reply, 400, "InvalidParameter")


async def test_v2_malformed_body_is_invalid_parameter(sim: Running) -> None:
    reply = await sim.post(V2_EVAL, b"{not json", action="DescribeEvalTask")
    assert_v2_error(reply, 400, "InvalidParameter")


# -- the Action query ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["DescribeEvalTasks", "", "describeevaltask"])
async def test_unknown_action_is_a_v2_error_naming_it(sim: Running, action: str) -> None:
    reply = await sim.post(V2_EVAL, {"taskId": "ame-x"}, action=action)
    message = assert_v2_error(reply, 400, "InvalidAction")
    assert repr(action) in message


async def test_missing_action_is_a_v2_error(sim: Running) -> None:
    assert_v2_error(await sim.post(V2_EVAL, {"taskId": "ame-x"}), 400, "InvalidAction")


async def test_request_signed_without_its_query_is_refused_as_signature_mismatch(
    sim: Running,
) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    reply = await sim.post(
        V2_EVAL,
        {"taskId": evaluation.evaluation_id_str},
        action="DescribeEvalTask",
        signed_query={},
    )
    assert_v2_error(reply, 401, "SignatureDoesNotMatch")
    assert reply.headers["X-Bce-Error-Code"] == "SignatureDoesNotMatch"


async def test_request_signed_for_another_action_is_refused(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    reply = await sim.post(
        V2_EVAL,
        {"evalId": evaluation.evaluation_id_str, "exportContent": ["metrics"]},
        action="CreateEvalResultExportTask",
        signed_query={"Action": "DescribeEvalTask"},
    )
    assert_v2_error(reply, 401, "SignatureDoesNotMatch")
    assert sim.simulator.creates_by_evaluation() == {}


async def test_v2_wrong_access_key_is_403_and_wrong_secret_401(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    body = {"taskId": evaluation.evaluation_id_str}
    stranger = Credentials("someone-else", sim.credentials.secret_key)
    reply = await sim.post(V2_EVAL, body, action="DescribeEvalTask", credentials=stranger)
    assert_v2_error(reply, 403, "InvalidAccessKeyId")
    impostor = Credentials(sim.credentials.access_key, "not-the-secret")
    reply = await sim.post(V2_EVAL, body, action="DescribeEvalTask", credentials=impostor)
    message = assert_v2_error(reply, 401, "SignatureDoesNotMatch")
    assert sim.credentials.secret_key not in message


async def test_v2_request_without_authorization_is_401(sim: Running) -> None:
    async with sim.session.post(
        sim.base_url + V2_EVAL, params={"Action": "DescribeEvalTask"}, json={"taskId": "ame-x"}
    ) as response:
        assert response.status == 401
        assert (await response.json())["code"] == "InvalidHTTPAuthHeader"


# -- throttling and faults on every call -----------------------------------------------


async def test_v2_throttle_is_http_429_and_one_window_covers_every_call() -> None:
    async with running_simulator(qps=2, retry_after=3) as sim:
        evaluation = sim.simulator.add_evaluation(0)
        assert (await sim.v1_evaluation(evaluation.evaluation_id)).status == 200
        assert (await sim.v2_evaluation(evaluation.evaluation_id_str)).status == 200
        throttled = await sim.v2_create(evaluation.evaluation_id_str)
        assert_v2_error(throttled, 429, "TooManyRequests")
        assert throttled.headers["Retry-After"] == "3"
        assert_v1_error(await sim.v1_create(evaluation.evaluation_id), 18)
        assert sim.simulator.creates_by_evaluation() == {}
        assert sim.simulator.stats.requests_by_outcome["throttled"] == 2


async def _six_calls(sim: Running) -> list[Reply]:
    evaluation = sim.simulator.add_evaluation(0)
    export = sim.simulator.add_export(0)
    return [
        await sim.v1_evaluation(evaluation.evaluation_id),
        await sim.v2_evaluation(evaluation.evaluation_id_str),
        await sim.v1_create(evaluation.evaluation_id),
        await sim.v2_create(evaluation.evaluation_id_str),
        await sim.v1_export(export.export_id),
        await sim.v2_export(export.export_id_str),
    ]


async def test_http_500_fault_strikes_every_call_and_creates_nothing() -> None:
    async with running_simulator(faults=FaultRates(http_500=1.0)) as sim:
        replies = await _six_calls(sim)
        assert [reply.status for reply in replies] == [500] * 6
        assert sim.simulator.creates_by_evaluation() == {}
        assert sim.simulator.stats.requests_by_outcome["http_500"] == 6


async def test_internal_error_fault_has_each_generations_shape() -> None:
    async with running_simulator(faults=FaultRates(code_336100=1.0)) as sim:
        replies = await _six_calls(sim)
        for reply in replies[0::2]:
            assert_v1_error(reply, 336100)
        for reply in replies[1::2]:
            assert_v2_error(reply, 500, "InternalError")
        assert sim.simulator.creates_by_evaluation() == {}


async def test_truncated_fault_cuts_every_calls_answer() -> None:
    async with running_simulator(faults=FaultRates(truncated=1.0)) as sim:
        replies = await _six_calls(sim)
        assert all(isinstance(reply.payload, str) for reply in replies)
        assert sum(sim.simulator.creates_by_evaluation().values()) == 2  # made, answer cut


async def test_reset_fault_on_a_create_strikes_after_the_export_was_made() -> None:
    async with running_simulator(create_faults=FaultRates(reset=1.0)) as sim:
        evaluation = sim.simulator.add_evaluation(0)
        for create in (sim.v1_create, sim.v2_create):
            key = evaluation.evaluation_id if create == sim.v1_create else None
            with pytest.raises(aiohttp.ClientError):
                await create(key or evaluation.evaluation_id_str)
        assert sim.simulator.creates_by_evaluation() == {evaluation.evaluation_id: 2}
        # Status calls keep today's faults (none here): the lost exports are there to find.
        for export_id in evaluation.export_ids:
            assert (await sim.v1_export(export_id)).payload["result"]["id"] == (
                evaluation.evaluation_id
            )
        assert sim.simulator.stats.requests_by_outcome["reset"] == 2


async def test_slow_fault_on_a_create_answers_late_after_making_the_export() -> None:
    async with running_simulator(create_faults=FaultRates(slow=1.0), slow_delay=0.05) as sim:
        evaluation = sim.simulator.add_evaluation(0)
        created = await sim.v2_create(evaluation.evaluation_id_str)
        assert created.status == 200
        assert evaluation.export_ids == [
            sim.simulator.export(created.payload["result"]["taskId"]).export_id
        ]
        assert sim.simulator.stats.requests_by_outcome["slow"] == 1


async def test_create_faults_can_be_set_apart_from_the_others_mid_run(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    sim.simulator.configure(create_faults=FaultRates(http_500=1.0))
    assert (await sim.v2_create(evaluation.evaluation_id_str)).status == 500
    assert (await sim.v2_evaluation(evaluation.evaluation_id_str)).status == 200
    sim.simulator.configure(create_faults=None)
    assert (await sim.v2_create(evaluation.evaluation_id_str)).status == 200


# -- which generations are served -------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_generation_left_out_answers_a_plain_404(api: str) -> None:
    async with running_simulator(api=api) as sim:
        replies = await _six_calls(sim)
        statuses = [reply.status for reply in replies]
        served = [200, 404] * 3 if api == "v1" else [404, 200] * 3
        assert statuses == served
        assert sim.simulator.stats.requests_by_outcome["not_served"] == 3


async def test_api_can_be_changed_mid_run(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    sim.simulator.configure(api="v1")
    assert (await sim.v2_evaluation(evaluation.evaluation_id_str)).status == 404
    sim.simulator.configure(api="both")
    assert (await sim.v2_evaluation(evaluation.evaluation_id_str)).status == 200


async def test_stats_endpoint_reports_calls_and_evaluations(sim: Running) -> None:
    evaluation = sim.simulator.add_evaluation(0)
    await sim.v2_create(evaluation.evaluation_id_str)
    async with sim.session.get(sim.base_url + "/_sim/stats?exports=1") as response:
        stats = await response.json()
    assert stats["requests_by_call"]["v2.create_export"] == 1
    assert stats["evaluations"]["by_state"] == {"Done": 1}
    [record] = stats["evaluation_records"]
    assert record["exports_created"] == evaluation.export_ids


def test_signed_header_names_match_the_clients() -> None:
    from qianfan_export_wait.client import SIGNED_HEADERS

    assert tuple(sorted(SIGNED)) == tuple(sorted(SIGNED_HEADERS))
    assert V1_EXPORT_STATUS.endswith("/export/info")
    assert V1_CREATE + "/info" == V1_EXPORT_STATUS
    assert V1_EVALUATION.endswith("/eval/detail")


# -- the api option of the test helpers ---------------------------------------------------


@pytest.mark.qianfan_simulator(api="v1")
async def test_fixture_marker_takes_the_api(qianfan_simulator: SimulatedQianfan) -> None:
    assert qianfan_simulator.simulator.config.api == "v1"
    async with aiohttp.ClientSession() as session:
        running = Running(
            qianfan_simulator.simulator, qianfan_simulator.base_url, session, FakeClock()
        )
        evaluation = qianfan_simulator.simulator.add_evaluation(0)
        assert (await running.v2_evaluation(evaluation.evaluation_id_str)).status == 404
        assert (await running.v1_evaluation(evaluation.evaluation_id)).status == 200


def test_threaded_simulator_takes_the_api() -> None:
    with simulated_qianfan_in_thread(api="v2") as fake:
        assert fake.simulator.config.api == "v2"


async def test_a_long_value_is_quoted_back_cut_short(sim: Running) -> None:
    long_id = "ame-" + "x" * 5000
    message = assert_v2_error(await sim.v2_evaluation(long_id), 404, "ResourceNotFound")
    assert "ame-xxx" in message
    assert len(message) < 200
