"""The error tree and the classification of API answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qianfan_export_wait.errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    MissingCredentialsError,
    QianfanError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
    scrub_text,
)
from qianfan_export_wait.protocol.classify import (
    classify_response,
    error_class_for,
    parse_retry_after,
)

THROTTLE = [4, 17, 18, 19, 336501, 336502]
TRANSIENT = [2, 336000, 336100, 500000]
AUTH = [6, 13, 14, 110, 111]
INVALID = [100, 336001, 336002, 336003, 336004, 336005, 500001]
CODE_TABLE = (
    [(code, ThrottledError) for code in THROTTLE]
    + [(code, TransientError) for code in TRANSIENT]
    + [(code, AuthError) for code in AUTH]
    + [(code, InvalidRequestError) for code in INVALID]
)


def _error_body(code: Any, message: str = "something", log_id: Any = "7788") -> dict[str, Any]:
    return {"error_code": code, "error_msg": message, "log_id": log_id}


@pytest.mark.parametrize(("code", "expected"), CODE_TABLE)
def test_int_error_code_with_http_200_is_classified_by_family(
    code: int, expected: type[ApiError]
) -> None:
    error = classify_response(200, _error_body(code))
    assert type(error) is expected
    assert error is not None and error.code == code


@pytest.mark.parametrize(("code", "expected"), CODE_TABLE)
def test_string_error_code_with_http_200_is_classified_as_its_int(
    code: int, expected: type[ApiError]
) -> None:
    error = classify_response(200, _error_body(f" {code} "))
    assert type(error) is expected
    assert error is not None and error.code == code


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, ThrottledError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (401, AuthError),
        (403, AuthError),
        (404, ApiError),
        (400, ApiError),
    ],
)
def test_http_status_without_code_is_classified_by_status(
    status: int, expected: type[ApiError]
) -> None:
    error = classify_response(status, None)
    assert type(error) is expected
    assert error is not None and error.http_status == status


@pytest.mark.parametrize("bce_code", ["SignatureDoesNotMatch", "RequestExpired"])
@pytest.mark.parametrize("status", [400, 401, 403])
def test_bce_error_code_header_is_an_auth_error(bce_code: str, status: int) -> None:
    error = classify_response(status, {"code": bce_code}, {"X-Bce-Error-Code": bce_code})
    assert type(error) is AuthError
    assert error is not None and error.bce_error_code == bce_code


def test_bce_error_code_header_is_an_error_even_with_http_200() -> None:
    assert type(classify_response(200, None, {"x-bce-error-code": "RequestExpired"})) is AuthError


def test_http_429_with_bce_error_code_header_is_throttling() -> None:
    error = classify_response(429, None, {"X-Bce-Error-Code": "RequestRateLimitExceeded"})
    assert type(error) is ThrottledError


def test_bce_error_code_header_with_server_error_status_is_transient() -> None:
    assert type(classify_response(503, None, {"X-Bce-Error-Code": "InternalError"})) is (
        TransientError
    )


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, 18, ThrottledError),
        (401, 500001, InvalidRequestError),
        (429, 110, AuthError),
        (200, 336100, TransientError),
        (403, 336501, ThrottledError),
    ],
)
def test_error_code_beats_http_status(status: int, code: int, expected: type[ApiError]) -> None:
    assert type(classify_response(status, _error_body(code))) is expected


def test_error_code_beats_bce_error_code_header() -> None:
    error = classify_response(400, _error_body(18), {"X-Bce-Error-Code": "SignatureDoesNotMatch"})
    assert type(error) is ThrottledError


@pytest.mark.parametrize("code", [999999, "NotACode", -1])
def test_unknown_code_with_http_200_is_a_plain_api_error(code: Any) -> None:
    assert type(classify_response(200, _error_body(code))) is ApiError


def test_unknown_code_falls_back_to_http_status() -> None:
    assert type(classify_response(503, _error_body(999999))) is TransientError


def test_successful_body_is_not_an_error() -> None:
    assert classify_response(200, {"log_id": "1", "result": {"state": "Done"}}) is None


def test_empty_body_with_http_200_is_not_an_error_here() -> None:
    assert classify_response(200, None) is None


def test_message_and_log_id_are_kept() -> None:
    error = classify_response(200, _error_body(500001, "param invalid", 2340692759))
    assert error is not None
    assert error.message == "param invalid"
    assert error.log_id == "2340692759"
    assert "log_id=2340692759" in str(error)
    assert error.to_dict() == {"code": 500001, "message": "param invalid", "log_id": "2340692759"}


def test_request_id_header_stands_in_for_missing_log_id() -> None:
    error = classify_response(500, None, {"X-Bce-Request-Id": "req-1"})
    assert error is not None and error.log_id == "req-1"


def test_message_falls_back_to_http_status() -> None:
    error = classify_response(502, None)
    assert error is not None and error.message == "HTTP 502"


def test_control_characters_in_message_are_neutralised() -> None:
    error = classify_response(200, _error_body(500001, "bad\r\nX-Injected: 1\x1b[31m"))
    assert error is not None
    assert "\n" not in error.message and "\x1b" not in error.message


def test_overlong_message_is_cut() -> None:
    error = classify_response(200, _error_body(500001, "m" * 10_000))
    assert error is not None and len(error.message) <= 503


def test_retry_after_and_date_headers_are_carried() -> None:
    error = classify_response(
        429, None, {"Retry-After": "7", "Date": "Thu, 04 Jan 2024 03:20:30 GMT"}
    )
    assert error is not None
    assert error.retry_after == 7.0
    assert error.server_date == datetime(2024, 1, 4, 3, 20, 30, tzinfo=UTC)


def test_error_class_for_without_anything_is_plain_api_error() -> None:
    assert error_class_for(None, None) is ApiError


# --- Retry-After --------------------------------------------------------------------------

_NOW = datetime(2024, 1, 4, 3, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("999999", 3600.0),
        ("inf", 3600.0),
        ("Thu, 04 Jan 2024 03:21:00 GMT", 30.0),
        ("Thu, 04 Jan 2024 03:20:00 GMT", 0.0),
        ("Thu, 04 Jan 2024 05:20:30 GMT", 3600.0),
    ],
)
def test_retry_after_seconds_and_http_date_are_parsed(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=_NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "Thu, 99 Foo 2024"])
def test_unusable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=_NOW) is None


# --- the tree -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (ResponseFormatError, TransientError),
        (ThrottledError, ApiError),
        (AuthError, ApiError),
        (InvalidRequestError, ApiError),
        (ApiError, QianfanError),
        (MissingCredentialsError, ConfigurationError),
        (ConfigurationError, ValueError),
    ],
)
def test_error_tree_shape(child: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(child, parent)


def test_api_error_repr_names_class_code_and_log_id() -> None:
    error = ThrottledError("slow down", code=18, log_id="42")
    assert repr(error) == "ThrottledError('slow down', code=18, log_id='42')"


def test_bce_gateway_error_body_without_the_header_keeps_its_code_and_request_id() -> None:
    body = {"requestId": "req-7", "code": "RequestExpired", "message": "time is off"}
    error = classify_response(400, body, {})
    assert type(error) is AuthError
    assert (error.bce_error_code, error.log_id) == ("RequestExpired", "req-7")
    assert str(error).startswith("time is off")
    # A numeric "code" or a success status is not a gateway error code.
    assert classify_response(400, {"code": "18"}, {}).bce_error_code is None  # type: ignore[union-attr]
    assert classify_response(200, {"code": "x", "result": {}}, {}) is None


# --- any header text at all ---------------------------------------------------------------

HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
)
DATE_LIKE = st.builds(
    "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
    st.sampled_from(["Mon", "Thu", "Xyz", ""]),
    st.integers(min_value=-5, max_value=99),
    st.sampled_from(["Jan", "Dec", "Foo"]),
    st.integers(min_value=-10, max_value=10**6),
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["GMT", "UTC", "+0000", "-2359", "+9999", "EST", "", "Z"]),
)
NUMBER_LIKE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.sampled_from(["1e400", "-1e400", "0x10", "1_000", " 5 ", "٣", "+inf", "-nan"]),
)


@settings(max_examples=500, deadline=None)
@given(value=HEADER_TEXT | DATE_LIKE | NUMBER_LIKE)
def test_any_retry_after_is_none_or_a_finite_pause_of_at_most_an_hour(value: str) -> None:
    seconds = parse_retry_after(value, now=_NOW)
    assert seconds is None or (isinstance(seconds, float) and 0.0 <= seconds <= 3600.0)


@settings(max_examples=500, deadline=None)
@given(
    date=HEADER_TEXT | DATE_LIKE,
    retry_after=HEADER_TEXT | DATE_LIKE | NUMBER_LIKE,
    status=st.sampled_from([200, 400, 401, 403, 429, 500, 503]),
)
def test_any_date_and_retry_after_headers_classify_without_raising(
    date: str, retry_after: str, status: int
) -> None:
    error = classify_response(
        status,
        {"error_code": 18, "error_msg": "x"},
        {"Date": date, "Retry-After": retry_after},
    )
    assert isinstance(error, ApiError)
    when = error.server_date
    assert when is None or (isinstance(when, datetime) and when.tzinfo is not None)
    if when is not None:
        when.timestamp()  # a moment the client can compute an offset from
    pause = error.retry_after
    assert pause is None or 0.0 <= pause <= 3600.0


# --- scrubbing what a server echoes -------------------------------------------------------

_AK = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
_SIGNATURE = "99399c09c64d103002050f93cbbc9bad818272eefa51d2b1a4bd0c7b1d3e5f7a"
_AUTHORIZATION = (
    f"bce-auth-v1/{_AK}/2026-12-03T10:19:29Z/1800/content-type;host;x-bce-date/{_SIGNATURE}"
)


@settings(max_examples=500, deadline=None)
@given(
    before=st.text(max_size=30),
    secret=st.sampled_from([_AK, _SIGNATURE, _AUTHORIZATION, _SIGNATURE.upper()]),
    after=st.text(max_size=30),
    repeat=st.integers(min_value=1, max_value=3),
)
def test_scrubbed_text_never_holds_our_access_key_or_signature(
    before: str, secret: str, after: str, repeat: int
) -> None:
    text = scrub_text((before + secret + after) * repeat, {_AK: _AK[:4] + "..."})
    assert _AK not in text
    assert _SIGNATURE not in text.lower()


def test_scrubbing_leaves_other_text_alone() -> None:
    message = "QPS limit reached for app 12345 (log 7788, sha 0123abcd)"
    assert scrub_text(message, {_AK: "AKID..."}) == message
    assert scrub_text("", {_AK: "AKID..."}) == ""


# -- the names that moved to protocol.classify -------------------------------------------

MOVED_TO_CLASSIFY = [
    "AUTH_CODES",
    "INVALID_REQUEST_CODES",
    "THROTTLE_CODES",
    "TRANSIENT_CODES",
    "classify_response",
    "error_class_for",
    "parse_retry_after",
    "tls_error",
]


@pytest.mark.parametrize("name", MOVED_TO_CLASSIFY)
def test_a_moved_name_is_still_found_in_errors_and_is_the_same_object(name: str) -> None:
    from qianfan_export_wait import errors
    from qianfan_export_wait.protocol import classify

    new_home = f"qianfan_export_wait.protocol.classify.{name}"
    for _ in range(2):  # every use warns, not only the first
        with pytest.warns(DeprecationWarning, match=new_home.replace(".", r"\.")):
            assert getattr(errors, name) is getattr(classify, name)


def test_importing_errors_alone_imports_no_protocol_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, qianfan_export_wait.errors as e\n"
        "print(sorted(m for m in sys.modules if m.startswith('qianfan_export_wait.protocol')))\n"
        "from qianfan_export_wait.errors import *\n"
        "print(classify_response(429, None).__class__.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[:2] == ["[]", "ThrottledError"]


def test_an_unknown_name_of_errors_is_an_attribute_error() -> None:
    from qianfan_export_wait import errors

    with pytest.raises(AttributeError, match="no attribute 'classify_responses'"):
        _ = errors.classify_responses
    from qianfan_export_wait.protocol import classify

    assert frozenset(THROTTLE) == classify.THROTTLE_CODES
    assert frozenset(AUTH) == classify.AUTH_CODES
