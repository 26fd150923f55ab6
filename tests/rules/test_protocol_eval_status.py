"""The evaluation-status calls of both generations."""

from __future__ import annotations

import json

import pytest
from protocol_support import NOW
from statuses import answer_bytes, v1_answer, v2_answer, v2_error

from qianfan_export_wait import protocol
from qianfan_export_wait.errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)
from qianfan_export_wait.models import Phase
from qianfan_export_wait.protocol import EvalStatus, V1EvalStatus, V2EvalStatus

V1 = V1EvalStatus()
V2 = V2EvalStatus()

V1_STATES = [
    ("Pending", Phase.RUNNING),
    ("Doing", Phase.RUNNING),
    ("DoingWithManualBegin", Phase.RUNNING),
    ("Stopping", Phase.RUNNING),
    ("Done", Phase.DONE),
    ("PartlyDone", Phase.DONE),
    ("Failed", Phase.FAILED),
    ("Stopped", Phase.FAILED),
]
V2_STATES = [
    ("Queued", Phase.RUNNING),
    ("Running", Phase.RUNNING),
    ("RunningWithManualBegin", Phase.RUNNING),
    ("RunningWithMetricsCalculating", Phase.RUNNING),
    ("Successed", Phase.DONE),
    ("Succeeded", Phase.DONE),
    ("Stopping", Phase.RUNNING),
    ("Failed", Phase.FAILED),
    ("Stopped", Phase.FAILED),
    ("Fail", Phase.FAILED),
    ("Done", Phase.DONE),
]


def test_v1_request_posts_the_evaluation_id() -> None:
    request = V1.build("ame-vwgs2ybhyhfv")
    assert (request.method, request.path, request.query) == (
        "POST",
        "/wenxinworkshop/modelrepo/eval/detail",
        (),
    )
    assert json.loads(request.body) == {"id": "ame-vwgs2ybhyhfv"}
    assert V1.build(305).body == b'{"id":305}'


def test_v2_request_is_describe_eval_task_with_task_id() -> None:
    request = V2.build("ame-1")
    assert request.target == "/v2/eval?Action=DescribeEvalTask"
    assert json.loads(request.body) == {"taskId": "ame-1"}


@pytest.mark.parametrize("bad", [0, None, "", "a\x00b", 1.0])
def test_bad_evaluation_id_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="evaluation"):
        V1.build(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="evaluation"):
        V2.build(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("state", "phase"), V1_STATES + V2_STATES)
def test_every_state_of_both_vocabularies_maps_to_its_phase_in_both_generations(
    state: str, phase: Phase
) -> None:
    v1 = V1.read(200, {}, v1_answer({"evaluationId": 5, "state": state}), NOW, args=5)
    v2 = V2.read(200, {}, v2_answer({"taskId": "ame-1", "state": state}), NOW, args="ame-1")
    for record in (v1, v2):
        assert isinstance(record, EvalStatus)
        assert (record.state, record.phase, record.state_is_known) == (state, phase, True)
        assert record.is_terminal is (phase is not Phase.RUNNING)
    assert (v1.api, v1.log_id, v2.api, v2.request_id) == ("v1", "2340692759", "v2", "req-1")


def test_partly_done_is_a_failure_when_the_caller_says_so() -> None:
    strict = protocol.eval_status("v1", partly_done_is_done=False)
    record = strict.read(200, {}, v1_answer({"id": 5, "state": "PartlyDone"}), NOW)
    assert record.phase is Phase.FAILED
    assert protocol.eval_status("v2", partly_done_is_done=False).partly_done_is_done is False


@pytest.mark.parametrize("operation", [V1, V2], ids=["v1", "v2"])
def test_unknown_state_reads_as_running_and_is_flagged(
    operation: V1EvalStatus | V2EvalStatus,
) -> None:
    answer = v1_answer if operation is V1 else v2_answer
    record = operation.read(200, {}, answer({"taskId": "ame-1", "state": "Paused"}), NOW)
    assert (record.state, record.phase, record.state_is_known) == ("Paused", Phase.RUNNING, False)
    assert record.raw["state"] == "Paused"


def test_answer_for_another_evaluation_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match="not 'ame-2'"):
        V2.read(200, {}, v2_answer({"taskId": "ame-1", "state": "Running"}), NOW, args="ame-2")


def test_answer_without_any_id_takes_the_requested_one_or_is_refused() -> None:
    payload = v1_answer({"state": "Doing"})
    assert V1.read(200, {}, payload, NOW, args=7).eval_id == 7
    with pytest.raises(ResponseFormatError, match="no evaluation id"):
        V1.read(200, {}, payload, NOW)


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(4, ThrottledError), (2, TransientError), (14, AuthError), (500001, InvalidRequestError)],
)
def test_v1_error_code_in_200_body(code: int, error_class: type) -> None:
    with pytest.raises(ApiError) as caught:
        V1.read(200, {}, answer_bytes({"error_code": code, "error_msg": "x"}), NOW)
    assert type(caught.value) is error_class


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (429, "TooManyRequests", ThrottledError),
        (500, "InternalError", TransientError),
        (403, "AccessDenied", AuthError),
        (400, "InvalidRequestArgumentError", InvalidRequestError),
    ],
)
def test_v2_error_bodies(status: int, code: str, error_class: type) -> None:
    with pytest.raises(ApiError) as caught:
        V2.read(status, {}, v2_error(code), NOW)
    assert type(caught.value) is error_class


@pytest.mark.parametrize("payload", [b"", b"nope", b'{"result": []}', b'{"result": {"id": 1}}'])
def test_unreadable_answers_are_format_errors(payload: bytes) -> None:
    with pytest.raises(ResponseFormatError):
        V1.read(200, {}, payload, NOW)
    with pytest.raises(ResponseFormatError):
        V2.read(200, {}, payload, NOW)


def test_records_are_frozen() -> None:
    record = V2.read(200, {}, v2_answer({"taskId": "ame-1", "state": "Running"}), NOW)
    with pytest.raises(AttributeError):
        record.state = "Done"  # type: ignore[misc]
