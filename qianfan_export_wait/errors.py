"""Every failure this library raises, and the one place that classifies API answers.

::

    QianfanError                      base of everything below
    ├── ConfigurationError(ValueError)  bad credentials, endpoint or option; raised before I/O
    │   └── MissingCredentialsError       QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY unset or empty
    ├── ApiError                        the server (or the wire) said no: code, message,
    │   │                               log_id, http_status
    │   ├── ThrottledError              slow down, then retry the same request
    │   │                               (codes 4, 17, 18, 19, 336501, 336502; HTTP 429)
    │   ├── TransientError              retry after a short wait
    │   │   │                           (codes 2, 336000, 336100, 500000; HTTP 5xx;
    │   │   │                           connection reset; timeout)
    │   │   ├── ResponseFormatError     body not JSON, not the expected shape, or too large
    │   │   │   └── UnexpectedAnswerError   an answer about another export than the one
    │   │   │                               asked: a protocol error for that poll, retried;
    │   │   │                               the service is up, so never an outage
    │   │   └── ServiceUnavailableError the waiter gave up: no answer for the outage budget
    │   ├── AuthError                   stop: every other request will fail too
    │   │   │                           (HTTP 401/403; codes 6, 13, 14, 110, 111;
    │   │   │                           X-Bce-Error-Code such as SignatureDoesNotMatch)
    │   │   └── TlsError                the server could not be trusted: an untrusted
    │   │                               certificate, a host name mismatch, not TLS at all
    │   └── InvalidRequestError         this request will never succeed
    │                                   (codes 100, 336001-336005, 500001: e.g. unknown id)
    ├── WaitError                       raised by ``ExportWaiter.wait`` for one export
    │   ├── ExportFailedError           the export reached ``Fail``
    │   └── ExportTimeoutError          the deadline passed before a terminal state
    ├── UnexpectedError                 not an API error (a strategy, a limiter, a bug)
    │                                   ended an export; ``__cause__`` is it
    ├── ClientClosedError(RuntimeError) the client, the downloader or the fleet
    │                                   limiter was used after ``aclose()``; a waiter
    │                                   polling through a closed client ends every wait
    ├── WaiterClosedError(RuntimeError) the waiter was closed while this call waited
    └── DownloadError                   a Done export's file could not be fetched or
        │                               unpacked: export_id, reason, http_status
        ├── DownloadSourceError         no usable location: not Done, no downloadUrl or
        │                               bucket/key, an unsafe URL, HTTP 404, BOS said no
        ├── TransferError               reset, short body, timeout, HTTP 5xx: resumed
        │   ├── LinkExpiredError        HTTP 403 or a past expiry on the link: the status
        │   │                           is polled again for a fresh link, then retried
        │   └── DownloadTimeoutError    the body stalled, or the caller's deadline passed
        ├── DownloadTooLargeError       the file is larger than ``max_bytes``
        ├── DownloaderClosedError       the downloader was used after ``aclose()``
        │                               (also a ``ClientClosedError``)
        ├── ChecksumError               size, Content-MD5, ETag or sha256 do not match
        │                               the bytes received; nothing is left on disk
        ├── UnsafeArchiveError          ``extract`` refused the zip: a path outside the
        │                               folder, a link, too many files or bytes
        └── UnsafeFileError             a file in the download folder is a link, a fifo,
                                        a folder...: never followed nor opened

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
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ApiError",
    "AuthError",
    "ChecksumError",
    "ClientClosedError",
    "ConfigurationError",
    "DownloadError",
    "DownloadSourceError",
    "DownloadTimeoutError",
    "DownloadTooLargeError",
    "DownloaderClosedError",
    "ExportFailedError",
    "ExportTimeoutError",
    "InvalidRequestError",
    "LinkExpiredError",
    "MissingCredentialsError",
    "QianfanError",
    "ResponseFormatError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TlsError",
    "TransferError",
    "TransientError",
    "UnexpectedAnswerError",
    "UnexpectedError",
    "UnsafeArchiveError",
    "UnsafeFileError",
    "WaitError",
    "WaiterClosedError",
    "classify_response",
    "error_class_for",
    "parse_retry_after",
    "scrub_text",
    "tls_error",
]

THROTTLE_CODES = frozenset({4, 17, 18, 19, 336501, 336502})
TRANSIENT_CODES = frozenset({2, 336000, 336100, 500000})
AUTH_CODES = frozenset({6, 13, 14, 110, 111})
INVALID_REQUEST_CODES = frozenset({100, 336001, 336002, 336003, 336004, 336005, 500001})
_MAX_RETRY_AFTER = 3600.0


class QianfanError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigurationError(QianfanError, ValueError):
    """A bad credential, endpoint or option, found before any request is sent."""


class MissingCredentialsError(ConfigurationError):
    """The access key or secret key is missing or empty."""


class ApiError(QianfanError):
    """The API answered with an error, or no usable answer arrived."""

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
        bce_error_code: str | None = None,
        retry_after: float | None = None,
        server_date: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.log_id = log_id
        self.http_status = http_status
        self.bce_error_code = bce_error_code
        self.retry_after = retry_after
        self.server_date = server_date

    def __str__(self) -> str:
        details = [
            f"{label}={value}"
            for label, value in (
                ("code", self.code),
                ("http_status", self.http_status),
                ("bce_error_code", self.bce_error_code),
                ("log_id", self.log_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, log_id={self.log_id!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``{"code", "message", "log_id"}`` object the CLI prints."""
        return {"code": self.code, "message": str(self.message), "log_id": self.log_id}

    def scrub(self, hidden: Mapping[str, str]) -> None:
        """Hide our credentials and signatures in the text the server's answer put here
        (see ``scrub_text``)."""
        self.message = scrub_text(self.message, hidden)
        self.args = (self.message, *self.args[1:])
        if self.log_id is not None:
            self.log_id = scrub_text(self.log_id, hidden)
        if self.bce_error_code is not None:
            self.bce_error_code = scrub_text(self.bce_error_code, hidden)
        if isinstance(self.code, str):
            self.code = scrub_text(self.code, hidden)


class ThrottledError(ApiError):
    """The account's rate limit was hit: slow down and send the same request again."""


class TransientError(ApiError):
    """A passing fault (server error, reset, timeout): retry after a short wait."""


class ResponseFormatError(TransientError):
    """The body was not JSON, not the documented shape, or larger than allowed."""


class UnexpectedAnswerError(ResponseFormatError):
    """The server answered about another export than the one asked (``asked``,
    ``answered``): that poll is retried. The service did answer, so it counts toward no
    outage; an export that gets only such answers ends as ``error`` carrying this."""

    def __init__(
        self,
        message: str,
        *,
        asked: int | str | None = None,
        answered: int | str | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, log_id=log_id, http_status=http_status)
        self.asked = asked
        self.answered = answered

    def scrub(self, hidden: Mapping[str, str]) -> None:
        """``ApiError.scrub``, and the id the server answered about too."""
        super().scrub(hidden)
        if isinstance(self.answered, str):
            self.answered = scrub_text(self.answered, hidden)


class ServiceUnavailableError(TransientError):
    """The waiter gave up on an export: the service gave no answer for ``unavailable_for``
    seconds (connection refused, 5xx, resets, timeouts). ``last_error`` is the last failure;
    its code, HTTP status and log id are copied here."""

    def __init__(self, unavailable_for: float, last_error: ApiError | None) -> None:
        cause = f"; last error: {last_error}" if last_error is not None else ""
        super().__init__(
            f"gave up after {unavailable_for:.0f} s without an answer: "
            f"the service stayed unavailable{cause}",
            code=None if last_error is None else last_error.code,
            log_id=None if last_error is None else last_error.log_id,
            http_status=None if last_error is None else last_error.http_status,
        )
        self.unavailable_for = unavailable_for
        self.last_error = last_error


class AuthError(ApiError):
    """Credentials or signature rejected: every other request would fail the same way."""


class TlsError(AuthError):
    """The TLS handshake failed, so no request was sent. ``problem`` says why:
    ``"untrusted_certificate"``, ``"hostname_mismatch"``, ``"not_tls"`` (the port
    answers, but not in TLS: plain http?) or ``"handshake"`` (anything else)."""

    def __init__(self, message: str, *, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


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


class InvalidRequestError(ApiError):
    """This request can never succeed as sent, e.g. an export id that does not exist."""


class WaitError(QianfanError):
    """An export did not end in ``Done`` while waiting for it."""

    def __init__(self, message: str, *, export_id: int | str, status: Any = None) -> None:
        super().__init__(message)
        self.export_id = export_id
        self.status = status


class ExportFailedError(WaitError):
    """The export reached the terminal state ``Fail``."""


class ExportTimeoutError(WaitError):
    """The deadline passed before the export reached ``Done`` or ``Fail``."""


class UnexpectedError(QianfanError):
    """An exception that is not an API error ended an export: a wait strategy, a limiter or
    a hook that raised, a closed client, a bug. The exception is ``original`` and
    ``__cause__``."""

    def __init__(self, original: BaseException, during: str) -> None:
        super().__init__(f"{type(original).__name__} while {during}: {original}")
        self.original = original
        self.__cause__ = original


class ClientClosedError(QianfanError, RuntimeError):
    """An object (the client, the downloader, the fleet limiter) was used after
    ``aclose()``: make a new one. No request was sent."""


class WaiterClosedError(QianfanError, RuntimeError):
    """The waiter was closed while this call was still waiting, or is used after closing."""


class DownloadError(QianfanError):
    """A Done export's file could not be fetched, verified or unpacked.

    ``reason`` is a short machine-readable word (``"checksum"``, ``"expired_link"``...);
    ``to_dict()`` is the JSON object the CLI prints as ``download_error``.
    """

    reason = "download"

    def __init__(
        self,
        message: str,
        *,
        export_id: int | str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.export_id = export_id
        self.http_status = http_status
        self.code = code

    def __str__(self) -> str:
        where = f"export {self.export_id}: " if self.export_id is not None else ""
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{where}{self.message}{status}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, export_id={self.export_id!r})"

    def to_dict(self) -> dict[str, Any]:
        """``{"type", "reason", "message", "http_status", "code"}`` for a JSON line."""
        return {
            "type": type(self).__name__,
            "reason": self.reason,
            "message": self.message,
            "http_status": self.http_status,
            "code": self.code,
        }


class DownloadSourceError(DownloadError):
    """The status names no usable file: not Done, no link or object, an unsafe URL, or
    the storage answered that the file is not there or not ours to read."""

    reason = "source"


class TransferError(DownloadError):
    """The transfer broke (reset, short body, timeout, HTTP 5xx): resumed and retried."""

    reason = "transfer"


class LinkExpiredError(TransferError):
    """The download link answered HTTP 403 or has expired: ask the status for a new one."""

    reason = "expired_link"


class DownloadTimeoutError(TransferError):
    """No progress for ``stall_timeout`` seconds (``code="Stalled"``), or the caller's
    deadline passed (``code="Deadline"``); not retried."""

    reason = "timeout"


class DownloadTooLargeError(DownloadError):
    """The file is, or grew while streaming, larger than the downloader's ``max_bytes``."""

    reason = "too_large"


class DownloaderClosedError(DownloadError, ClientClosedError):
    """The ``Downloader`` was used after ``aclose()``."""

    reason = "closed"


class ChecksumError(DownloadError):
    """The bytes received do not match ``Content-Length``, ``Content-MD5`` or the ETag."""

    reason = "checksum"


class UnsafeArchiveError(DownloadError):
    """A zip was refused: a member outside the folder, a link, or too many files or bytes."""

    reason = "unsafe_archive"


class UnsafeFileError(DownloadError):
    """A path in the download folder is a symbolic link or not a regular file: refused,
    never followed or opened."""

    reason = "unsafe_file"


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


# A bce-auth-v1 Authorization value (it names the access key and carries a signature).
_AUTHORIZATION = re.compile(r"bce-auth-v1/[^\s\"'<>(){}\[\],]*", re.IGNORECASE)
# A signature or signing key: 64 hex digits (HMAC-SHA256), and any longer run of them.
_HEX_256 = re.compile(r"[0-9A-Fa-f]{64,}")


def scrub_text(text: str, hidden: Mapping[str, str] | None = None) -> str:
    """``text`` (from a server's answer) with every ``bce-auth-v1/...`` Authorization value
    and every 64-hex-digit signature masked, and each key of ``hidden`` (e.g. our access
    key) replaced by its value (e.g. the key shortened), so an answer that echoes our
    request headers cannot put them in an error or a log."""
    if not text:
        return text
    text = _AUTHORIZATION.sub("bce-auth-v1/<hidden>", text)
    for secret, shown in (hidden or {}).items():
        if secret and secret in text:
            text = text.replace(secret, shown)
    return _HEX_256.sub("<signature hidden>", text)


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


class CreateUncertainError(ApiError):
    """A create request may or may not have taken effect: it was sent, but no clear answer
    came back (a timeout or reset mid-request, a server error, an unreadable answer).
    Never retried blindly, so that nothing is created twice: look the task up first.
    ``operation`` names the call (e.g. ``"v2.create_export"``); ``__cause__`` is the
    failure behind it, when there was one."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        code: int | str | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, log_id=log_id, http_status=http_status)
        self.operation = operation


# Added at the end so that a parallel edit of the list above merges cleanly.
__all__ += ["CreateUncertainError"]


class UnknownStateError(ApiError):
    """An export stayed in states outside the known ones for longer than allowed
    (``unknown_state_timeout``): it ends as ``error`` instead of waiting on. ``state`` is
    the last such state, as the server spelled it."""

    def __init__(self, message: str, *, state: str, export_id: int | str) -> None:
        super().__init__(message)
        self.state = state
        self.export_id = export_id


__all__ += ["UnknownStateError"]
