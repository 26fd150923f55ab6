"""How an API answer is classified: the error-code tables, ``classify_response``,
``error_class_for``, ``Retry-After`` and the TLS reasons. Pure code: no I/O; the error
classes are ``errors``'s.

Classification (:func:`classify_response`) looks at the body's ``error_code`` first (it may
arrive with HTTP 200, as an int or a string), then at ``X-Bce-Error-Code`` (or, on a 4xx/5xx
without it, a BCE gateway body's string ``code``), then at the HTTP status; HTTP 429 means
throttling even when an ``X-Bce-Error-Code`` comes with it. An ``ApiError`` whose code is
unknown and whose status says nothing is kept as a plain ``ApiError`` and treated as
permanent for that one export.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    ApiError,
    AuthError,
    InvalidRequestError,
    ThrottledError,
    TlsError,
    TransientError,
)

__all__ = [
    "AUTH_CODES",
    "INVALID_REQUEST_CODES",
    "THROTTLE_CODES",
    "TRANSIENT_CODES",
    "classify_response",
    "error_class_for",
    "parse_retry_after",
    "tls_error",
]

THROTTLE_CODES = frozenset({4, 17, 18, 19, 336501, 336502})
TRANSIENT_CODES = frozenset({2, 336000, 336100, 500000})
AUTH_CODES = frozenset({6, 13, 14, 110, 111})
INVALID_REQUEST_CODES = frozenset({100, 336001, 336002, 336003, 336004, 336005, 500001})
_MAX_RETRY_AFTER = 3600.0


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH_CODES = frozenset({62, 64})
# What OpenSSL says when the bytes that came back are not a TLS record.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"}
)
_TRUST_HINT = "trust its CA with SSL_CERT_FILE=FILE (or --ca-bundle FILE on the command line)"


def tls_error(host: str, cause: BaseException | None) -> TlsError:
    """The ``TlsError`` for a failed handshake with ``host``, from the ``ssl`` error
    behind it (its ``verify_code``/``verify_message``, or its ``reason``)."""
    verify_code = getattr(cause, "verify_code", None)
    detail = str(getattr(cause, "verify_message", None) or "").rstrip(".")
    reason = str(getattr(cause, "reason", None) or "")
    if verify_code in _NAME_MISMATCH_CODES:
        return TlsError(
            f"TLS failed for {host}: the certificate is for another host name ({detail}); "
            "use an endpoint with a name the certificate lists",
            problem="hostname_mismatch",
        )
    if verify_code is not None:
        return TlsError(
            f"TLS failed for {host}: the server's certificate is not trusted "
            f"({detail or 'verification failed'}); {_TRUST_HINT}",
            problem="untrusted_certificate",
        )
    if reason in _NOT_TLS_REASONS:
        return TlsError(
            f"TLS failed for {host}: the server does not speak TLS ({reason}); "
            "if it serves plain http, use an http:// endpoint",
            problem="not_tls",
        )
    return TlsError(
        f"TLS handshake with {host} failed ({reason or type(cause).__name__})",
        problem="handshake",
    )


def _as_int_code(code: object) -> int | str | None:
    if code is None or isinstance(code, bool):
        return None
    if isinstance(code, int):
        # A code of absurd size is kept as a short string: it can name no real error and
        # must not make a 4,000-character message.
        return code if abs(code) < 10**12 else f"{str(code)[:20]}..."
    if isinstance(code, str):
        stripped = code.strip()
        if stripped.isascii() and stripped.lstrip("-").isdigit() and len(stripped) <= 12:
            return int(stripped)
        return _clean_text(stripped, 64) if stripped else None
    if isinstance(code, float) and code.is_integer():
        return int(code)
    return _clean_text(code, 64)


def error_class_for(
    code: int | str | None, http_status: int | None, bce_error_code: str | None = None
) -> type[ApiError]:
    """Which ``ApiError`` subclass an error code, BCE header and HTTP status amount to."""
    if isinstance(code, int):
        if code in THROTTLE_CODES:
            return ThrottledError
        if code in TRANSIENT_CODES:
            return TransientError
        if code in AUTH_CODES:
            return AuthError
        if code in INVALID_REQUEST_CODES:
            return InvalidRequestError
    if http_status == 429:
        return ThrottledError
    if bce_error_code and (http_status is None or http_status < 500):
        return AuthError
    if http_status is not None:
        if http_status in (401, 403):
            return AuthError
        if http_status >= 500:
            return TransientError
    return ApiError


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date), clamped to [0, 1h]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _parse_http_date(value)
        if when is None:
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _clean_text(value: object, limit: int = 500) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def classify_response(
    http_status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> ApiError | None:
    """The error a response carries, or ``None`` when it is a success to be parsed.

    ``body`` is the decoded JSON object (``None`` when the body was empty or not JSON).
    """
    headers = headers or {}
    raw_code = body.get("error_code") if body is not None else None
    code = _as_int_code(raw_code)
    bce_error_code = headers.get("X-Bce-Error-Code") or headers.get("x-bce-error-code")
    if bce_error_code is None and body is not None and http_status >= 400:
        # BCE's gateway error body, {"code": "RequestExpired", "message", "requestId"},
        # may come without the header.
        body_code = body.get("code")
        if isinstance(body_code, str) and body_code and not body_code.isdigit():
            bce_error_code = body_code
    if code is None and bce_error_code is None and 200 <= http_status < 300:
        return None
    log_id = body.get("log_id") if body is not None else None
    if log_id is None and body is not None:
        log_id = body.get("requestId")
    if log_id is None:
        log_id = headers.get("X-Bce-Request-Id") or headers.get("x-bce-request-id")
    message = None
    if body is not None:
        message = body.get("error_msg") or body.get("message")
    if not message:
        message = bce_error_code or f"HTTP {http_status}"
    error_class = error_class_for(code, http_status, bce_error_code)
    return error_class(
        _clean_text(message),
        code=code,
        log_id=None if log_id is None else _clean_text(log_id, 64),
        http_status=http_status,
        bce_error_code=None if bce_error_code is None else _clean_text(bce_error_code, 64),
        retry_after=parse_retry_after(headers.get("Retry-After") or headers.get("retry-after")),
        server_date=_parse_http_date(headers.get("Date") or headers.get("date")),
    )
