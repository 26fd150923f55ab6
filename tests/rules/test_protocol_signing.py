"""Protocol requests signed with their query reproduce Baidu's own signer byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qianfan_export_wait import protocol
from qianfan_export_wait.auth import Credentials, parse_authorization, sign
from qianfan_export_wait.protocol import Request, signed_headers

VECTORS = Path(__file__).parents[1] / "vectors" / "bce_auth_v1_generated.json"
ACTIONS = {
    "DescribeEvalResultExportTask": protocol.export_status("v2").build("amemt-1"),
    "DescribeEvalTask": protocol.eval_status("v2").build("ame-1"),
    "CreateEvalResultExportTask": protocol.create_export("v2").build(
        protocol.V2CreateExportArgs("ame-1")
    ),
}


def _v2_vectors() -> list[Any]:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    chosen = [v for v in vectors if v["note"].startswith("V2 console call as our protocol")]
    assert len(chosen) >= 20
    return [pytest.param(v, id=f"{i:02d}-{v['query']['Action']}") for i, v in enumerate(chosen)]


@pytest.mark.parametrize("vector", _v2_vectors())
def test_signed_headers_of_a_v2_request_match_baidus_signer(vector: dict[str, Any]) -> None:
    request = ACTIONS[vector["query"]["Action"]]
    assert (request.method, request.path, request.query_params) == (
        vector["method"],
        vector["path"],
        vector["query"],
    )
    headers = signed_headers(
        request,
        Credentials(vector["access_key"], vector["secret_key"]),
        vector["headers"]["Host"],
        vector["timestamp"],
        expiration_seconds=vector["expiration_seconds"],
    )
    assert headers == {**vector["headers"], "Authorization": vector["authorization"]}


def test_the_action_query_changes_the_signature() -> None:
    credentials = Credentials("ak-test-0001", "sk-test")
    request = protocol.export_status("v2").build("amemt-1")
    without_query = Request(request.operation, request.method, request.path, (), request.body)
    signed = signed_headers(request, credentials, "qianfan.baidubce.com", 1_700_000_000)
    unsigned = signed_headers(without_query, credentials, "qianfan.baidubce.com", 1_700_000_000)
    assert signed["Authorization"] != unsigned["Authorization"]
    assert signed["Authorization"] == sign(
        credentials,
        method="POST",
        path="/v2/eval",
        query={"Action": "DescribeEvalResultExportTask"},
        headers={k: v for k, v in signed.items() if k != "Authorization"},
        timestamp=1_700_000_000,
        headers_to_sign=("content-type", "host", "x-bce-date"),
    )
    assert parse_authorization(signed["Authorization"]).signed_headers == (
        "content-type",
        "host",
        "x-bce-date",
    )


def test_query_string_is_encoded_as_it_is_signed() -> None:
    request = Request("x", "POST", "/v2/eval", (("Action", "A b"), ("k/é", "v=1")), b"{}")
    assert request.query_string == "Action=A%20b&k%2F%C3%A9=v%3D1"
    assert request.target == "/v2/eval?Action=A%20b&k%2F%C3%A9=v%3D1"
