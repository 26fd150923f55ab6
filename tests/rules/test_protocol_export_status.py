"""The export-status calls of both generations, as pure build/read operations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from protocol_support import NOW
from statuses import answer_bytes, v1_answer, v1_result, v2_answer, v2_error, v2_result

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
from qianfan_export_wait.models import ExportState, ExportStatus, Phase, parse_export_status
from qianfan_export_wait.protocol import V1ExportStatus, V2ExportStatus
from qianfan_export_wait.protocol.v2_export_status import split_storage_path
from qianfan_export_wait.waiting.outcomes import OutcomeKind, kind_for_state

V1 = V1ExportStatus()
V2 = V2ExportStatus()
SEED_RESULT = v1_result(
    96,
    "Done",
    documented=True,
    exportIDStr="amemt-hkkf5y9e64j8",
    exportPath="qianfan_modelrepo_offline/workspace/model_eval_result_export/cl_test23_305.csv",
)


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export_id", "sent"),
    [(96, b'{"exportID":96}'), ("amemt-hkkf5y9e64j8", b'{"exportID":"amemt-hkkf5y9e64j8"}')],
)
def test_v1_request_posts_the_id_with_its_own_json_type(export_id: object, sent: bytes) -> None:
    request = V1.build(export_id)  # type: ignore[arg-type]
    assert (request.method, request.path, request.query, request.body) == (
        "POST",
        "/wenxinworkshop/modelrepo/eval/result/export/info",
        (),
        sent,
    )
    assert request.target == request.path


def test_v2_request_carries_the_action_query_and_task_id() -> None:
    request = V2.build("amemt-gmq1")
    assert request.method == "POST"
    assert request.path == "/v2/eval"
    assert request.query == (("Action", "DescribeEvalResultExportTask"),)
    assert request.target == "/v2/eval?Action=DescribeEvalResultExportTask"
    assert json.loads(request.body) == {"taskId": "amemt-gmq1"}


@pytest.mark.parametrize("bad", [0, -1, True, None, "", " amemt-1", "a\nb", 2.5, "x" * 129])
def test_v1_bad_id_is_refused_before_any_request_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="id"):
        V1.build(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [96, True, None, "", "a\tb"])
def test_v2_takes_only_a_string_task_id(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="export task id"):
        V2.build(bad)  # type: ignore[arg-type]


def test_registry_picks_the_generation_and_refuses_others() -> None:
    assert isinstance(protocol.export_status(), V1ExportStatus)
    assert isinstance(protocol.export_status("v2"), V2ExportStatus)
    with pytest.raises(ConfigurationError, match="'v3'"):
        protocol.export_status("v3")


# --- V1 answers -----------------------------------------------------------------------------


def test_v1_answer_reads_exactly_as_parse_export_status() -> None:
    payload = v1_answer(SEED_RESULT)
    record = V1.read(200, {}, payload, NOW, args=96)
    assert record == parse_export_status(json.loads(payload))
    assert (record.api, record.server_state, record.state_name) == ("v1", None, "Done")


@pytest.mark.parametrize(
    ("state", "phase", "known"),
    [
        ("Pending", Phase.RUNNING, True),
        ("Uploading", Phase.RUNNING, True),
        ("Done", Phase.DONE, True),
        ("Fail", Phase.FAILED, True),
        ("Exploded", Phase.RUNNING, False),
    ],
)
def test_v1_states_map_to_phases(state: str, phase: Phase, known: bool) -> None:
    record = V1.read(200, {}, v1_answer({**SEED_RESULT, "state": state}), NOW)
    assert (record.phase, record.state_is_known, record.state_name) == (phase, known, state)


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (18, ThrottledError),
        ("17", ThrottledError),
        (336100, TransientError),
        (110, AuthError),
        (500001, InvalidRequestError),
        (424242, ApiError),
    ],
)
def test_v1_error_code_in_a_200_body_is_classified(code: object, error_class: type) -> None:
    payload = answer_bytes({"error_code": code, "error_msg": "no", "log_id": "L1"})
    with pytest.raises(ApiError) as caught:
        V1.read(200, {}, payload, NOW)
    assert type(caught.value) is error_class
    assert (caught.value.http_status, caught.value.log_id) == (200, "L1")


def test_v1_answer_for_another_export_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match="not 97"):
        V1.read(200, {}, v1_answer(SEED_RESULT), NOW, args=97)


def test_v1_retry_after_date_is_read_against_the_now_passed_in() -> None:
    headers = {"Retry-After": "Fri, 02 Jan 2026 03:04:35 GMT"}
    with pytest.raises(ThrottledError) as caught:
        V1.read(200, headers, answer_bytes({"error_code": 18, "error_msg": "qps"}), NOW)
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("operation", [V1, V2])
@pytest.mark.parametrize("offset", [-86_400.0, -1.5, 0.0, 29.25, 3_000.0])
def test_now_as_posix_seconds_reads_retry_after_as_the_same_datetime(
    operation: Any, offset: float
) -> None:
    headers = {"Retry-After": "Fri, 02 Jan 2026 03:04:35 GMT"}
    body = (
        answer_bytes({"error_code": 18, "error_msg": "qps"})
        if operation is V1
        else v2_error("RequestRateLimitExceeded")
    )
    seconds = NOW.timestamp() + offset
    found = []
    for now in (seconds, datetime.fromtimestamp(seconds, UTC)):
        with pytest.raises(ThrottledError) as caught:
            operation.read(429 if operation is V2 else 200, headers, body, now)
        found.append(caught.value.retry_after)
    assert found[0] == found[1] == min(max(30.0 - offset, 0.0), 3600.0)


@pytest.mark.parametrize("now", [True, float("nan"), float("inf"), "1700000000", None])
def test_a_now_that_is_no_clock_reading_is_refused_before_reading(now: object) -> None:
    with pytest.raises(ConfigurationError, match="expected an aware datetime or POSIX seconds"):
        V1.read(200, {}, v1_answer(SEED_RESULT), now)  # type: ignore[arg-type]


# --- V2 answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "normalized", "phase"),
    [
        ("Queued", ExportState.PENDING, Phase.RUNNING),
        ("Running", ExportState.UPLOADING, Phase.RUNNING),
        ("Succeeded", ExportState.DONE, Phase.DONE),
        ("Failed", ExportState.FAIL, Phase.FAILED),
        ("Done", ExportState.DONE, Phase.DONE),
        ("Fail", ExportState.FAIL, Phase.FAILED),
        ("Pending", ExportState.PENDING, Phase.RUNNING),
        ("Uploading", ExportState.UPLOADING, Phase.RUNNING),
        ("succeeded", ExportState.DONE, Phase.DONE),
        ("FAILED", ExportState.FAIL, Phase.FAILED),
    ],
)
def test_v2_states_of_both_vocabularies_are_normalized_and_keep_their_spelling(
    state: str, normalized: ExportState, phase: Phase
) -> None:
    record = V2.read(200, {}, v2_answer(v2_result(state=state)), NOW, args="amemt-gmq1")
    assert record.state is normalized
    assert record.phase is phase
    assert record.state_name == state
    assert record.raw["state"] == state
    assert record.state_is_known


def test_v2_succeeded_is_terminal_done_to_the_waiter() -> None:
    record = V2.read(200, {}, v2_answer(v2_result(state="Succeeded")), NOW)
    assert record.is_terminal
    assert kind_for_state(record.state) is OutcomeKind.DONE


def test_v2_unknown_state_reads_as_running_but_flagged() -> None:
    record = V2.read(200, {}, v2_answer(v2_result(state="Archiving")), NOW)
    assert record.state == "Archiving"
    assert (record.phase, record.state_is_known, record.is_terminal) == (
        Phase.RUNNING,
        False,
        False,
    )
    assert kind_for_state(record.state) is OutcomeKind.PENDING


def test_v2_sys_storage_record_has_the_fields_downloads_read() -> None:
    record = V2.read(200, {}, v2_answer(v2_result()), NOW, args="amemt-gmq1")
    assert isinstance(record, ExportStatus)
    assert record.api == "v2"
    assert (record.export_id, record.export_id_str, record.id_str) == (0, "amemt-gmq1", "ame-eval1")
    assert record.export_type == "local"
    assert record.download_url == "https://bj.bcebos.com/qianfan/x.zip?authorization=abc"
    assert record.log_id == "req-1"
    assert record.matches("amemt-gmq1")


@pytest.mark.parametrize("field", ["storagePath", "exportPath"])
def test_v2_bos_path_is_split_into_bucket_and_key(field: str) -> None:
    result = v2_result(storageType="BOS", downloadUrl="", **{field: "bos:/my-bucket/dir/x.zip"})
    record = V2.read(200, {}, v2_answer(result), NOW)
    assert (record.export_type, record.volume_id, record.export_path) == (
        "storage",
        "my-bucket",
        "dir/x.zip",
    )


@pytest.mark.parametrize(
    ("path", "bucket", "expected"),
    [
        ("bos:/b/k/x.zip", None, ("b", "k/x.zip")),
        ("bos://b/k", None, ("b", "k")),
        ("/b/k", None, ("b", "k")),
        ("b/k", None, ("b", "k")),
        ("BOS:/b/k", None, ("b", "k")),
        ("b/k", "b", ("b", "k")),
        ("k/x.zip", "b", ("b", "k/x.zip")),
        ("b", None, (None, None)),
        ("", None, (None, None)),
        (None, "b", ("b", None)),
    ],
)
def test_split_storage_path(path: str | None, bucket: str | None, expected: tuple) -> None:
    assert split_storage_path(path, bucket) == expected


def test_v2_answer_for_another_task_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match="not 'amemt-other'"):
        V2.read(200, {}, v2_answer(v2_result()), NOW, args="amemt-other")


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (429, "TooManyRequests", ThrottledError),
        (429, "InvalidRequestArgumentError", ThrottledError),
        (400, "QpsLimitExceeded", ThrottledError),
        (500, "InternalError", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (502, "SomethingNew", TransientError),
        (401, "SomethingNew", AuthError),
        (403, "AccessDenied", AuthError),
        (400, "RequestExpired", AuthError),
        (400, "SignatureDoesNotMatch", AuthError),
        (400, "PermissionDeniedError", AuthError),
        (400, "InvalidRequestArgumentError", InvalidRequestError),
        (404, "ResourceNotFound", InvalidRequestError),
        (400, "QuotaLimitExceeded", InvalidRequestError),
    ],
)
def test_v2_error_bodies_are_classified(status: int, code: str, error_class: type) -> None:
    with pytest.raises(ApiError) as caught:
        V2.read(status, {}, v2_error(code, "the message"), NOW)
    error = caught.value
    assert type(error) is error_class
    assert (error.code, error.message, error.log_id, error.http_status) == (
        code,
        "the message",
        "req-err",
        status,
    )
    assert error.bce_error_code == code


def test_v2_request_expired_keeps_the_server_date_for_a_re_sign() -> None:
    headers = {"date": "Fri, 02 Jan 2026 03:10:05 GMT"}
    with pytest.raises(AuthError) as caught:
        V2.read(400, headers, v2_error("RequestExpired"), NOW)
    assert caught.value.bce_error_code == "RequestExpired"
    assert caught.value.server_date == datetime.fromisoformat("2026-01-02T03:10:05+00:00")


def test_v2_retry_after_is_read_in_any_header_case() -> None:
    with pytest.raises(ThrottledError) as caught:
        V2.read(429, {"retry-after": "7"}, v2_error("TooManyRequests"), NOW)
    assert caught.value.retry_after == 7.0


def test_v2_gateway_error_code_in_v1_shape_follows_the_v1_tables() -> None:
    with pytest.raises(ThrottledError):
        V2.read(200, {}, answer_bytes({"error_code": 18, "error_msg": "qps", "log_id": "1"}), NOW)


@pytest.mark.parametrize("status", [500, 404, 403])
def test_v2_non_json_error_body_is_classified_by_status(status: int) -> None:
    expected = {500: TransientError, 404: InvalidRequestError, 403: AuthError}[status]
    with pytest.raises(ApiError) as caught:
        V2.read(status, {}, b"<html>bad gateway</html>", NOW)
    assert type(caught.value) is expected


@pytest.mark.parametrize("operation", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'{"result": 5}', "result"),
        (b'{"result": {"state": "Done"}}', "exportID|taskId"),
        (b"x" * (protocol.MAX_RESPONSE_BYTES + 1), "refused"),
    ],
)
def test_unreadable_success_is_a_format_error(
    operation: V1ExportStatus | V2ExportStatus, payload: bytes, match: str
) -> None:
    with pytest.raises(ResponseFormatError, match=match) as caught:
        operation.read(200, {}, payload, NOW)
    assert caught.value.http_status == 200


def test_v2_redirect_is_not_followed() -> None:
    with pytest.raises(ApiError, match="redirect"):
        V2.read(302, {"Location": "https://elsewhere"}, b"", NOW)


@pytest.mark.parametrize("now", [None, datetime(2026, 1, 1), "2026-01-01"])
def test_read_refuses_a_now_that_is_not_an_aware_datetime(now: object) -> None:
    with pytest.raises(ConfigurationError, match="now"):
        V2.read(200, {}, v2_answer(v2_result()), now)  # type: ignore[arg-type]


def test_export_status_built_the_old_way_is_a_v1_record_as_before() -> None:
    record = ExportStatus(
        96, "amemt-1", 305, None, ExportState.DONE, "local", None, None, "u", "L", {}
    )
    assert (record.api, record.server_state, record.state_name, record.phase) == (
        "v1",
        None,
        "Done",
        Phase.DONE,
    )
    assert record == ExportStatus(
        96, "amemt-1", 305, None, ExportState.DONE, "local", None, None, "u", "L", {"x": 1}
    )
