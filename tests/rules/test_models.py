"""Export states, status parsing, export-id validation and the id rule for text."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qianfan_export_wait.errors import ResponseFormatError
from qianfan_export_wait.models import (
    MAX_INT_EXPORT_ID,
    ExportState,
    id_file_lines,
    parse_export_id,
    parse_export_status,
    validate_export_id,
)

# The success example of API.md, as documented.
DOCUMENTED_STORAGE_EXAMPLE: dict[str, Any] = {
    "log_id": "2340692759",
    "result": {
        "id": 305,
        "idStr": "ame-xxx",
        "exportID": 96,
        "exportIDStr": "amemt-hkkf5y9e64j8",
        "state": "Done",
        "exportType": "storage",
        "volumeId": "modelrepo-test",
        "exportPath": (
            "qianfan_modelrepo_offline/workspace/model_eval_result_export/"
            "cl_test23_305_1704338430470.csv"
        ),
        "downloadUrl": "",
    },
}

# A `local` export as the field table describes it: downloadUrl set, no volumeId, log_id an int.
DOCUMENTED_LOCAL_EXAMPLE: dict[str, Any] = {
    "log_id": 2340692760,
    "result": {
        "id": 306,
        "exportID": 97,
        "exportIDStr": "amemt-local00001",
        "state": "Uploading",
        "exportType": "local",
        "exportPath": "cl_test23_306.csv",
        "downloadUrl": "https://bj.bcebos.com/qianfan/cl_test23_306.csv?auth=x",
    },
}


def _with_result(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(DOCUMENTED_STORAGE_EXAMPLE)
    for key, value in changes.items():
        if value is _DROP:
            del body["result"][key]
        else:
            body["result"][key] = value
    return body


_DROP = object()


def test_documented_storage_example_parses_every_field() -> None:
    status = parse_export_status(DOCUMENTED_STORAGE_EXAMPLE)
    assert status.export_id == 96
    assert status.export_id_str == "amemt-hkkf5y9e64j8"
    assert status.id == 305
    assert status.id_str == "ame-xxx"
    assert status.state is ExportState.DONE
    assert status.export_type == "storage"
    assert status.volume_id == "modelrepo-test"
    assert status.export_path is not None and status.export_path.endswith("1704338430470.csv")
    assert status.download_url == ""
    assert status.log_id == "2340692759"
    assert status.is_terminal


def test_documented_local_example_parses_with_int_log_id_and_no_volume() -> None:
    status = parse_export_status(DOCUMENTED_LOCAL_EXAMPLE)
    assert status.state is ExportState.UPLOADING
    assert not status.is_terminal
    assert status.log_id == "2340692760"
    assert status.volume_id is None
    assert status.id_str is None
    assert status.download_url == DOCUMENTED_LOCAL_EXAMPLE["result"]["downloadUrl"]


@pytest.mark.parametrize(
    ("state", "terminal"),
    [("Pending", False), ("Uploading", False), ("Done", True), ("Fail", True)],
)
def test_only_done_and_fail_are_terminal(state: str, terminal: bool) -> None:
    status = parse_export_status(_with_result(state=state))
    assert status.state is ExportState(state)
    assert status.is_terminal is terminal


def test_unknown_state_is_kept_and_not_terminal() -> None:
    status = parse_export_status(_with_result(state="Cancelling"))
    assert status.state == "Cancelling"
    assert status.state_name == "Cancelling"
    assert not isinstance(status.state, ExportState)
    assert not status.is_terminal


def test_state_name_is_the_server_spelling_for_known_states() -> None:
    assert parse_export_status(_with_result(state="Fail")).state_name == "Fail"


@pytest.mark.parametrize("state", [None, 1, True, ["Done"], {"v": "Done"}, ""])
def test_state_that_is_not_a_non_empty_string_is_a_format_error(state: Any) -> None:
    with pytest.raises(ResponseFormatError, match=r"result\.state") as caught:
        parse_export_status(_with_result(state=state))
    assert caught.value.log_id == "2340692759"


def test_missing_state_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match=r"result\.state"):
        parse_export_status(_with_result(state=_DROP))


@pytest.mark.parametrize("export_id", ["96", 96.0, True, False, None, [96]])
def test_export_id_that_is_not_an_int_is_a_format_error(export_id: Any) -> None:
    with pytest.raises(ResponseFormatError, match=r"result\.exportID"):
        parse_export_status(_with_result(exportID=export_id))


def test_missing_export_id_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match=r"result\.exportID"):
        parse_export_status(_with_result(exportID=_DROP))


@pytest.mark.parametrize("body", [None, [], "Done", 96, {"log_id": "1"}, {"result": []}])
def test_body_without_a_result_object_is_a_format_error(body: Any) -> None:
    with pytest.raises(ResponseFormatError):
        parse_export_status(body)


def test_missing_optional_fields_are_tolerated() -> None:
    status = parse_export_status({"result": {"exportID": 96, "state": "Pending"}})
    assert status.export_id == 96
    assert status.log_id is None
    assert (
        status.export_id_str,
        status.id,
        status.id_str,
        status.export_type,
        status.volume_id,
        status.export_path,
        status.download_url,
    ) == (None, None, None, None, None, None, None)


def test_optional_field_of_wrong_type_reads_as_absent_and_stays_in_raw() -> None:
    status = parse_export_status(_with_result(id="305", volumeId=7))
    assert status.id is None
    assert status.volume_id is None
    assert status.raw["id"] == "305"


def test_extra_fields_are_kept_in_raw() -> None:
    status = parse_export_status(_with_result(progress=42, newThing={"a": [1]}))
    assert status.raw["progress"] == 42
    assert status.raw["newThing"] == {"a": [1]}
    assert status.raw["exportID"] == 96


def test_overlong_log_id_is_cut() -> None:
    body = {**DOCUMENTED_STORAGE_EXAMPLE, "log_id": "9" * 1000}
    assert parse_export_status(body).log_id == "9" * 64


@pytest.mark.parametrize(
    ("asked", "matches"),
    [(96, True), (97, False), ("amemt-hkkf5y9e64j8", True), ("96", True), ("amemt-other", False)],
)
def test_status_matches_either_id_form(asked: int | str, matches: bool) -> None:
    assert parse_export_status(DOCUMENTED_STORAGE_EXAMPLE).matches(asked) is matches


# --- export id validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, False, 1.5, 96.0, -1, 0, "", "   ", "x" * 10_000, "a\nb", "a\0b", [1], 2**64],
    ids=lambda value: repr(value)[:20],
)
def test_invalid_export_id_raises_value_error_naming_it(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        validate_export_id(value)
    assert repr(value)[:30] in str(caught.value)


@pytest.mark.parametrize("value", [" amemt-x", "amemt-x\t", "x" * 129])
def test_export_id_with_surrounding_space_or_over_128_characters_is_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="export id"):
        validate_export_id(value)


@pytest.mark.parametrize(
    "value", [96, 1, 2**63 - 1, "amemt-hkkf5y9e64j8", "x" * 128, "导出-1"], ids=repr
)
def test_valid_export_id_is_returned_unchanged(value: int | str) -> None:
    assert validate_export_id(value) == value
    assert type(validate_export_id(value)) is type(value)


def test_export_id_just_above_int64_is_rejected() -> None:
    with pytest.raises(ValueError, match="out of range"):
        validate_export_id(2**63)


# --- the id rule for text (command-line arguments, ids files) -----------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("96", 96),
        ("9223372036854775807", MAX_INT_EXPORT_ID),
        ("amemt-hkkf5y9e64j8", "amemt-hkkf5y9e64j8"),
        ("96a", "96a"),
        ("  97\t", 97),
        (" amemt-1 ", "amemt-1"),
    ],
)
def test_parse_export_id_reads_digits_as_the_int_id_and_anything_else_as_the_string_id(
    text: str, expected: int | str
) -> None:
    parsed = parse_export_id(text)
    assert (parsed, type(parsed)) == (expected, type(expected))


@pytest.mark.parametrize("digits", [19, 20, 39, 40, 41, 5000])
def test_parse_export_id_refuses_every_number_beyond_int64_naming_the_limit(digits: int) -> None:
    text = "9" * digits
    with pytest.raises(ValueError, match=r"out of range.*9223372036854775807") as caught:
        parse_export_id(text)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("text", ["0", "00", "-1", "-96"])
def test_parse_export_id_refuses_zero_and_negative_numbers_as_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_export_id(text)


@pytest.mark.parametrize("text", ["007", "0007", "0" * 5000 + "7"])
def test_parse_export_id_refuses_leading_zeros_and_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="leading zeros; write 7"):
        parse_export_id(text)


def test_parse_export_id_refuses_a_plus_sign() -> None:
    with pytest.raises(ValueError, match="has a sign"):
        parse_export_id("+7")


@pytest.mark.parametrize("text", ["", "   ", "amemt-\x00", "a\rb", "x" * 129])
def test_parse_export_id_applies_the_string_id_rules_to_everything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_export_id(text)


def test_id_file_lines_accepts_a_byte_order_mark_crlf_and_trailing_comments() -> None:
    lines = [b"\xef\xbb\xbf12 # the first\r\n", b"amemt-1\r\n", b"13#x\n", b"14"]
    assert list(id_file_lines(lines)) == [(1, "12"), (2, "amemt-1"), (3, "13"), (4, "14")]


def test_id_file_lines_skips_blank_and_comment_lines_keeping_line_numbers() -> None:
    lines = [b"# ids\n", b"\n", b"   \t\n", b"  # indented\n", b" 5 \n"]
    assert list(id_file_lines(lines)) == [(5, "5")]


def test_id_file_lines_keeps_a_bare_cr_inside_the_line_so_the_id_is_refused() -> None:
    [(number, text)] = list(id_file_lines([b"12\r34\n"]))
    assert (number, text) == (1, "12\r34")
    with pytest.raises(ValueError, match="control characters"):
        parse_export_id(text)


def test_id_file_lines_names_a_line_that_is_not_utf8() -> None:
    with pytest.raises(ValueError, match="line 2 is not UTF-8"):
        list(id_file_lines([b"1\n", b"\xff\xfe\n"]))


def test_id_file_lines_strips_a_byte_order_mark_only_at_the_start_of_the_file() -> None:
    [(_, text)] = list(id_file_lines([b"\n", b"\xef\xbb\xbf12\n"]))
    assert text == "\ufeff12"
