"""``console.records``: the JSON object of one export and the one way it becomes a line:
strict JSON, plain ASCII, whatever the server sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from statuses import make_status

from qianfan_export_wait.console.records import RECORD_KEYS, json_line, outcome_record
from qianfan_export_wait.errors import InvalidRequestError


def strict_json(line: str) -> Any:
    """Parse ``line`` as RFC 8259 JSON: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def record_with_result(**fields: Any) -> dict[str, Any]:
    status = make_status(96, "Done", log_id=None, **fields)
    return outcome_record(96, "done", status, None, 1, 0.5)


def test_record_has_the_documented_keys_in_order() -> None:
    assert tuple(record_with_result()) == RECORD_KEYS


def test_api_error_is_its_code_message_and_log_id() -> None:
    error = InvalidRequestError("param invalid", code=500001, log_id="42")
    record = outcome_record(7, "error", None, error, 1, 0.25)
    assert record["error"] == {"code": 500001, "message": "param invalid", "log_id": "42"}
    assert (record["state"], record["result"]) == (None, None)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_anywhere_become_null(number: float) -> None:
    record = record_with_result(score=number, nested={"list": [1.5, number, {"deep": number}]})
    line = json_line(record)
    result = strict_json(line)["result"]
    assert result["score"] is None
    assert result["nested"] == {"list": [1.5, None, {"deep": None}]}


def test_a_lone_surrogate_is_written_as_an_escape_and_reads_back_unchanged() -> None:
    record = record_with_result(exportPath="a\ud800b", downloadUrl="\udfff")
    line = json_line(record)
    assert line.isascii()
    assert strict_json(line)["result"]["exportPath"] == "a\ud800b"


def test_chinese_text_is_written_as_ascii_escapes_that_read_back_unchanged() -> None:
    path = "评估结果/导出.csv"
    line = json_line(record_with_result(exportPath=path))
    line.encode("cp1252")  # any stdout encoding can carry it
    assert strict_json(line)["result"]["exportPath"] == path


def test_a_result_nested_too_deeply_to_encode_becomes_null_and_the_line_survives() -> None:
    deep: Any = []
    for _ in range(100_000):  # deeper than any JSON encoder recurses
        deep = [deep]
    line = json_line(record_with_result(junk=deep))
    parsed = strict_json(line)
    assert (parsed["export_id"], parsed["result"]) == (96, None)
