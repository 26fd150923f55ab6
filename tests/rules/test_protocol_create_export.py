"""The create-export calls of both generations: checked arguments, and answers read so
that a create that may have happened is never mistaken for one that surely did not."""

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
    CreateUncertainError,
    InvalidRequestError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)
from qianfan_export_wait.protocol import (
    CreatedExport,
    V1CreateExport,
    V1CreateExportArgs,
    V2CreateExport,
    V2CreateExportArgs,
)

V1 = V1CreateExport()
V2 = V2CreateExport()


# --- requests -------------------------------------------------------------------------------


def test_v1_defaults_are_the_official_sdks() -> None:
    request = V1.build(V1CreateExportArgs(305))
    assert (request.method, request.path, request.query) == (
        "POST",
        "/wenxinworkshop/modelrepo/eval/result/export",
        (),
    )
    assert json.loads(request.body) == {
        "id": 305,
        "exportType": "local",
        "exportOpt": "total",
        "exportContent": ["prompt", "prediction", "completion", "metrics"],
    }


def test_v1_storage_part_export_sends_bucket_and_result_ids() -> None:
    args = V1CreateExportArgs(
        "ame-1",
        export_type="storage",
        export_opt="part",
        export_content=["metrics", "prompt"],
        volume_id="modelrepo-test",
        result_ids=["r1", "r2"],
    )
    assert json.loads(V1.build(args).body) == {
        "id": "ame-1",
        "exportType": "storage",
        "exportOpt": "part",
        "exportContent": ["metrics", "prompt"],
        "volumeId": "modelrepo-test",
        "resultIds": ["r1", "r2"],
    }


def test_v2_request_is_create_eval_result_export_task() -> None:
    request = V2.build(V2CreateExportArgs("ame-1"))
    assert request.target == "/v2/eval?Action=CreateEvalResultExportTask"
    assert json.loads(request.body) == {
        "evalId": "ame-1",
        "storageType": "sysStorage",
        "exportContent": ["prompt", "prediction", "completion", "metrics"],
    }
    bos = V2CreateExportArgs("ame-1", storage_type="bos", bucket="b1", export_content=["system"])
    assert json.loads(V2.build(bos).body) == {
        "evalId": "ame-1",
        "storageType": "BOS",
        "bucket": "b1",
        "exportContent": ["system"],
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eval_id": 0}, "evaluation id"),
        ({"eval_id": 1, "export_type": "cloud"}, "'cloud'"),
        ({"eval_id": 1, "export_opt": "some"}, "'some'"),
        ({"eval_id": 1, "export_content": []}, "empty"),
        ({"eval_id": 1, "export_content": "prompt"}, "not a list"),
        ({"eval_id": 1, "export_content": ["system"]}, "'system'"),
        ({"eval_id": 1, "export_content": ["prompt", "prompt"]}, "twice"),
        ({"eval_id": 1, "export_type": "storage"}, "volume id"),
        ({"eval_id": 1, "export_type": "storage", "volume_id": "a b"}, "'a b'"),
        ({"eval_id": 1, "volume_id": "b"}, "only for export_type='storage'"),
        ({"eval_id": 1, "export_opt": "part"}, "result ids"),
        ({"eval_id": 1, "export_opt": "part", "result_ids": []}, "0 result ids"),
        ({"eval_id": 1, "export_opt": "part", "result_ids": ["r"] * 101}, "101 result ids"),
        ({"eval_id": 1, "export_opt": "part", "result_ids": [5]}, "result id 5"),
        ({"eval_id": 1, "result_ids": ["r"]}, "only for export_opt='part'"),
    ],
)
def test_v1_bad_arguments_are_refused_naming_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        V1CreateExportArgs(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eval_id": 5}, "V2 takes the string id"),
        ({"eval_id": "ame-1", "storage_type": "local"}, "'local'"),
        ({"eval_id": "ame-1", "storage_type": "BOS"}, "bucket None"),
        ({"eval_id": "ame-1", "bucket": "b"}, "only for storage_type='BOS'"),
        ({"eval_id": "ame-1", "export_content": ["everything"]}, "'everything'"),
    ],
)
def test_v2_bad_arguments_are_refused_naming_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        V2CreateExportArgs(**kwargs)


@pytest.mark.parametrize("operation", [V1, V2], ids=["v1", "v2"])
def test_build_refuses_arguments_of_the_other_generation(
    operation: V1CreateExport | V2CreateExport,
) -> None:
    other = V2CreateExportArgs("ame-1") if operation is V1 else V1CreateExportArgs(1)
    with pytest.raises(ConfigurationError, match="expected V"):
        operation.build(other)  # type: ignore[arg-type]


def test_registry() -> None:
    assert isinstance(protocol.create_export(), V1CreateExport)
    assert isinstance(protocol.create_export("v2"), V2CreateExport)


# --- answers --------------------------------------------------------------------------------


def test_v1_created_export_prefers_the_string_id() -> None:
    payload = v1_answer({"exportID": 105, "exportIDStr": "amemt-hkkf5y9e64j8"}, "4159183555")
    record = V1.read(200, {}, payload, NOW)
    assert record == CreatedExport(
        "amemt-hkkf5y9e64j8", 105, "amemt-hkkf5y9e64j8", "v1", "4159183555", None
    )
    only_int = V1.read(200, {}, v1_answer({"exportID": 105}), NOW)
    assert (only_int.export_id, only_int.export_id_str) == (105, None)


@pytest.mark.parametrize(
    "result", [{"taskId": "amemt-gmq1"}, "amemt-gmq1"], ids=["object", "bare-string"]
)
def test_v2_created_export_is_the_task_id(result: object) -> None:
    record = V2.read(200, {}, v2_answer(result, "rq"), NOW)
    assert (record.export_id, record.export_id_str, record.api, record.request_id) == (
        "amemt-gmq1",
        "amemt-gmq1",
        "v2",
        "rq",
    )


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        (V1, v1_answer({})),
        (V1, v1_answer({"exportID": 0, "exportIDStr": ""})),
        (V1, v1_answer({"exportID": True})),
        (V2, v2_answer({})),
        (V2, v2_answer({"taskId": 7})),
        (V2, v2_answer({"taskId": "a\nb"})),
    ],
)
def test_success_without_a_usable_id_is_uncertain(
    operation: V1CreateExport | V2CreateExport, payload: bytes
) -> None:
    with pytest.raises(CreateUncertainError, match="may exist") as caught:
        operation.read(200, {}, payload, NOW)
    assert caught.value.operation == f"{operation.api}.create_export"


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (500, v2_error("InternalError")),
        (503, b"<html>busy</html>"),
        (200, b"{truncated"),
        (200, b""),
        (200, answer_bytes({"requestId": "r"})),
        (200, b"x" * (protocol.MAX_RESPONSE_BYTES + 1)),
    ],
)
def test_v2_server_error_or_unreadable_answer_may_have_created(status: int, payload: bytes) -> None:
    with pytest.raises(CreateUncertainError) as caught:
        V2.read(status, {}, payload, NOW)
    assert isinstance(caught.value.__cause__, TransientError)
    assert not isinstance(caught.value, TransientError)  # never retried as a transient
    assert caught.value.http_status == status


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(18, ThrottledError), (110, AuthError), (500001, InvalidRequestError)],
)
def test_v1_answers_that_surely_created_nothing_keep_their_class(
    code: int, error_class: type
) -> None:
    with pytest.raises(ApiError) as caught:
        V1.read(200, {}, answer_bytes({"error_code": code, "error_msg": "no"}), NOW)
    assert type(caught.value) is error_class


@pytest.mark.parametrize("code", [2, 336000, 500000])
def test_v1_transient_error_code_may_have_created(code: int) -> None:
    with pytest.raises(CreateUncertainError) as caught:
        V1.read(
            200, {}, answer_bytes({"error_code": code, "error_msg": "busy", "log_id": "L"}), NOW
        )
    assert (caught.value.code, caught.value.log_id) == (code, "L")


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (429, "TooManyRequests", ThrottledError),
        (403, "AccessDenied", AuthError),
        (400, "InvalidRequestArgumentError", InvalidRequestError),
    ],
)
def test_v2_answers_that_surely_created_nothing_keep_their_class(
    status: int, code: str, error_class: type
) -> None:
    with pytest.raises(ApiError) as caught:
        V2.read(status, {}, v2_error(code), NOW)
    assert type(caught.value) is error_class


def test_uncertain_error_is_an_api_error_but_not_a_format_error() -> None:
    assert issubclass(CreateUncertainError, ApiError)
    assert not issubclass(CreateUncertainError, (TransientError, ResponseFormatError))
