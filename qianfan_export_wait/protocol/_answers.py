"""Reading answers, either generation: body decoding, the V1 and V2 error reading, the
result shapes, what a create's error means, and the state tables of both generations.
Pure code: no I/O, no clock (``now`` is passed in)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from .._json import loads as json_loads
from ..errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    CreateUncertainError,
    InvalidRequestError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)
from ..models import Phase, describe_value, validate_export_id
from .classify import (
    _as_int_code,
    _clean_text,
    _parse_http_date,
    classify_response,
    error_class_for,
    parse_retry_after,
)

MAX_RESPONSE_BYTES = 1024 * 1024
"""The largest answer body read (the client's limit, kept equal)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]``, the name matched without regard to case."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == lowered:
                value = candidate
                break
    return value if isinstance(value, str) else None


Now = datetime | float
"""The caller's clock when an answer came: an aware ``datetime``, or POSIX seconds (a
``time.time()`` reading, turned into a datetime only if an error needs one)."""


def check_now(now: object) -> Now:
    """``now`` if it is an aware datetime or finite POSIX seconds (as a float), else
    ``ConfigurationError``."""
    if isinstance(now, datetime) and now.tzinfo is not None:
        return now
    if isinstance(now, (int, float)) and not isinstance(now, bool) and math.isfinite(now):
        return float(now)
    raise ConfigurationError(
        f"now is {describe_value(now)}; expected an aware datetime or POSIX seconds "
        "(the caller's clock)"
    )


def as_datetime(now: Now) -> datetime:
    """``now`` (checked by ``check_now``) as an aware datetime."""
    return now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)


def check_status(status: object) -> int:
    """``status`` if it is an HTTP status code, else ``ConfigurationError``."""
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise ConfigurationError(
            f"http status {describe_value(status)} is not an HTTP status code (100-999)"
        )
    return status


def decode(status: int, body: bytes) -> tuple[Any, str | None]:
    """The decoded JSON body and ``None``, or ``None`` and why it could not be decoded.
    A body over ``MAX_RESPONSE_BYTES`` is refused with ``ResponseFormatError``."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"body is a {type(body).__name__}; expected bytes")
    if len(body) > MAX_RESPONSE_BYTES:
        raise ResponseFormatError(
            f"response of {len(body)} bytes refused (limit {MAX_RESPONSE_BYTES} bytes)",
            http_status=status,
        )
    if not body:
        return None, "response body is empty"
    try:
        return json_loads(bytes(body)), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"response body is not JSON ({type(exc).__name__})"


# --- V1 answers ---------------------------------------------------------------------------


def v1_error(
    status: int, decoded: Any, decode_problem: str | None, headers: Mapping[str, str], now: Now
) -> ApiError | None:
    """The error a V1 answer carries (``error_code`` in the body first, then BCE's header
    and the HTTP status, as ``classify.classify_response``), ``Retry-After`` read at ``now``."""
    body = decoded if isinstance(decoded, dict) else None
    error = classify_response(status, body, headers)
    if error is None and 300 <= status < 400:
        error = ApiError(f"unexpected redirect (HTTP {status}) not followed", http_status=status)
    if error is not None:
        error.retry_after = parse_retry_after(header(headers, "Retry-After"), as_datetime(now))
        return error
    if decode_problem is not None:
        return ResponseFormatError(decode_problem, http_status=status)
    return None


def v1_result(status: int, decoded: Any) -> tuple[Mapping[str, Any], str | None]:
    """``result`` and ``log_id`` of a V1 success body, or ``ResponseFormatError``."""
    if not isinstance(decoded, Mapping):
        raise ResponseFormatError(
            f"response body is a JSON {type(decoded).__name__}, expected an object",
            http_status=status,
        )
    log_id_value = decoded.get("log_id")
    log_id = None if log_id_value is None else _clean_text(log_id_value, 64)
    result = decoded.get("result")
    if not isinstance(result, Mapping):
        shape = "missing" if result is None else f"a JSON {type(result).__name__}"
        raise ResponseFormatError(
            f"response 'result' is {shape}, expected an object", log_id=log_id, http_status=status
        )
    return result, log_id


# --- V2 answers ---------------------------------------------------------------------------

# Qianfan V2 answers an error as {"requestId", "code": "<string>", "message"} with HTTP
# >= 400. Its error-code page lists no throttling code, so HTTP 429 and rate-ish names
# throttle; signature, key, permission and expiry names are auth; the rest of 4xx is
# invalid and 5xx transient. Names are compared case-insensitively, without separators.
V2_THROTTLE_CODES = frozenset(
    {
        "toomanyrequests",
        "ratelimitexceeded",
        "requestlimitexceeded",
        "qpslimitexceeded",
        "qpslimitreached",
        "rpmlimitreached",
        "tpmlimitreached",
        "throttling",
        "throttlingexception",
        "requestthrottled",
    }
)
V2_THROTTLE_WORDS = ("ratelimit", "qpslimit", "throttl", "toomanyrequests")
V2_AUTH_CODES = frozenset(
    {
        "requestexpired",
        "signaturedoesnotmatch",
        "accessdenied",
        "accessdeniedbysourceurl",
        "invalidaccesskeyid",
        "invalidauthorization",
        "invalidsessiontoken",
        "authorizationfailed",
        "permissiondenied",
        "permissiondeniederror",
        "tokenstatusinvaliderror",
        "unauthorized",
        "forbidden",
        "iamcertificationfailed",
    }
)
V2_AUTH_WORDS = ("signature", "accessdenied", "accesskey", "permission", "unauthori", "credential")
V2_TRANSIENT_CODES = frozenset(
    {
        "internalerror",
        "internalservererror",
        "serviceunavailable",
        "servicetemporarilyunavailable",
        "serverbusy",
        "serverhighload",
        "requesttimeout",
        "gatewaytimeout",
    }
)


def _squeezed(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def v2_error_class(code: int | str | None, http_status: int | None) -> type[ApiError]:
    """Which ``ApiError`` subclass a V2 error code and HTTP status amount to. An int code
    (a V1-style ``error_code`` from the gateway) follows the V1 tables."""
    if http_status == 429:
        return ThrottledError
    if isinstance(code, int):
        return error_class_for(code, http_status)
    if isinstance(code, str) and code:
        name = _squeezed(code)
        if name in V2_THROTTLE_CODES or any(word in name for word in V2_THROTTLE_WORDS):
            return ThrottledError
        if name in V2_AUTH_CODES or any(word in name for word in V2_AUTH_WORDS):
            return AuthError
        if name in V2_TRANSIENT_CODES:
            return TransientError
    if http_status is not None:
        if http_status in (401, 403):
            return AuthError
        if http_status == 408 or http_status >= 500:
            return TransientError
        if 400 <= http_status < 500:
            return InvalidRequestError
    return ApiError


def _is_error_code(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "success", "ok")
    return True


def v2_error(
    status: int, decoded: Any, decode_problem: str | None, headers: Mapping[str, str], now: Now
) -> ApiError | None:
    """The error a V2 answer carries: ``code``/``message``/``requestId`` in the body (or a
    V1-style ``error_code``), ``X-Bce-Error-Code``, then the HTTP status."""
    body = decoded if isinstance(decoded, dict) else None
    raw_code: object = None
    if body is not None:
        raw_code = body.get("code") if _is_error_code(body.get("code")) else None
        if raw_code is None and _is_error_code(body.get("error_code")):
            raw_code = body.get("error_code")
    header_code = header(headers, "X-Bce-Error-Code")
    if raw_code is None and header_code:
        raw_code = header_code
    if raw_code is None and 200 <= status < 300:
        if decode_problem is not None:
            return ResponseFormatError(decode_problem, http_status=status)
        return None
    code = _as_int_code(raw_code)
    if raw_code is None and 300 <= status < 400:
        return ApiError(f"unexpected redirect (HTTP {status}) not followed", http_status=status)
    message: object = None
    log_id: object = None
    if body is not None:
        message = body.get("message") or body.get("error_msg")
        log_id = body.get("requestId") or body.get("log_id")
    if log_id is None:
        log_id = header(headers, "X-Bce-Request-Id")
    error_class = v2_error_class(code, status)
    return error_class(
        _clean_text(message or (code if code is not None else f"HTTP {status}")),
        code=code,
        log_id=None if log_id is None else _clean_text(log_id, 64),
        http_status=status,
        bce_error_code=code if isinstance(code, str) else None,
        retry_after=parse_retry_after(header(headers, "Retry-After"), as_datetime(now)),
        server_date=_parse_http_date(header(headers, "Date")),
    )


def v2_result(status: int, decoded: Any) -> tuple[Any, str | None]:
    """``result`` (any JSON value) and ``requestId`` of a V2 success body, or
    ``ResponseFormatError``."""
    if not isinstance(decoded, Mapping):
        raise ResponseFormatError(
            f"response body is a JSON {type(decoded).__name__}, expected an object",
            http_status=status,
        )
    request_id_value = decoded.get("requestId")
    if request_id_value is None:
        request_id_value = decoded.get("log_id")
    request_id = None if request_id_value is None else _clean_text(request_id_value, 64)
    result = decoded.get("result")
    if result is None:
        raise ResponseFormatError(
            "response 'result' is missing", log_id=request_id, http_status=status
        )
    return result, request_id


def required_str(
    result: Mapping[str, Any], status: int, log_id: str | None, key: str = "state"
) -> str:
    """``result[key]`` as a non-empty string, or ``ResponseFormatError``."""
    value = result.get(key)
    if not isinstance(value, str) or not value:
        raise ResponseFormatError(
            f"result.{key} is {describe_value(value)}, expected a non-empty string",
            log_id=log_id,
            http_status=status,
        )
    return value


def optional_str(result: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` whose value is a string."""
    for key in keys:
        value = result.get(key)
        if isinstance(value, str):
            return value
    return None


IdT = TypeVar("IdT", int, str)


def usable_id(value: object, kind: type[IdT]) -> IdT | None:
    """``value`` if it is an id of type ``kind`` that ``validate_export_id`` accepts."""
    if type(value) is not kind:
        return None
    try:
        validate_export_id(value)
    except ValueError:
        return None
    return value


def uncertain(error: ApiError, operation: str) -> ApiError:
    """What a create's error means: a throttle, auth or invalid answer surely created
    nothing and stays as it is; anything transient (5xx, an unreadable answer) may have
    created the task, so it becomes ``CreateUncertainError``."""
    if not isinstance(error, TransientError) and type(error) is not ApiError:
        return error
    wrapped = CreateUncertainError(
        f"the export may or may not have been created: {error}",
        operation=operation,
        code=error.code,
        log_id=error.log_id,
        http_status=error.http_status,
    )
    wrapped.__cause__ = error
    return wrapped


# --- one answer, either generation ------------------------------------------------------


def decoded_answer(api: str, status: int, headers: Mapping[str, str], body: bytes, now: Now) -> Any:
    """The decoded JSON of a success answer of generation ``api``, after checking the
    caller's arguments; the answer's classified error is raised instead."""
    if type(status) is not int or not 100 <= status <= 999:
        status = check_status(status)  # not a status code: raises
    if type(now) is not float or not math.isfinite(now):
        now = check_now(now)  # an aware datetime or POSIX seconds passes; the rest raises
    decoded, problem = decode(status, body)
    if (
        api == "v1"
        and 200 <= status < 300
        and type(decoded) is dict
        and decoded.get("error_code") is None
        and (headers.get("X-Bce-Error-Code") or headers.get("x-bce-error-code")) is None
    ):
        return decoded  # the usual answer: what v1_error finds no error in, found quickly
    error = (v1_error if api == "v1" else v2_error)(status, decoded, problem, headers, now)
    if error is not None:
        raise error
    return decoded


def answer_result(
    api: str, status: int, headers: Mapping[str, str], body: bytes, now: Now
) -> tuple[Any, str | None]:
    """``result`` and the log/request id of a success answer of generation ``api``;
    the answer's classified error is raised instead."""
    decoded = decoded_answer(api, status, headers, body, now)
    return (v1_result if api == "v1" else v2_result)(status, decoded)


def create_result(
    api: str, status: int, headers: Mapping[str, str], body: bytes, now: Now
) -> tuple[Any, str | None]:
    """``answer_result`` for a create: an error that may have followed a create is
    raised as ``CreateUncertainError`` (see ``uncertain``)."""
    try:
        return answer_result(api, status, headers, body, now)
    except ApiError as error:
        mapped = uncertain(error, f"{api}.create_export")
        if mapped is error:
            raise
        raise mapped from error


# --- states of both generations -----------------------------------------------------------

# Casefolded state names of evaluations, V1 and V2 together (a V2 prose still says
# Done/Fail); PartlyDone is decided by the caller.
EVAL_RUNNING = frozenset(
    name.casefold()
    for name in (
        "Pending",
        "Doing",
        "DoingWithManualBegin",
        "Stopping",
        "Queued",
        "Running",
        "RunningWithManualBegin",
        "RunningWithMetricsCalculating",
    )
)
EVAL_DONE = frozenset(name.casefold() for name in ("Done", "Successed", "Succeeded"))
EVAL_PARTLY_DONE = "partlydone"
EVAL_FAILED = frozenset(name.casefold() for name in ("Failed", "Fail", "Stopped"))


def eval_phase(state: str, *, partly_done_is_done: bool) -> tuple[Phase, bool]:
    """An evaluation state's phase, and whether the state is a known one (an unknown
    state is running)."""
    folded = state.casefold()
    if folded in EVAL_DONE:
        return Phase.DONE, True
    if folded == EVAL_PARTLY_DONE:
        return (Phase.DONE if partly_done_is_done else Phase.FAILED), True
    if folded in EVAL_FAILED:
        return Phase.FAILED, True
    if folded in EVAL_RUNNING:
        return Phase.RUNNING, True
    return Phase.RUNNING, False
