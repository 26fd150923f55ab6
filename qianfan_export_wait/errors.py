"""Every failure this library raises: the exception hierarchy.

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

How an answer is classified into these (the code tables, ``classify_response``,
``error_class_for``, ``parse_retry_after``, ``tls_error``) lives in
``qianfan_export_wait.protocol.classify``; those names are still found here, with a
``DeprecationWarning``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol.classify import (
        AUTH_CODES,  # noqa: F401 (found here through __getattr__)
        INVALID_REQUEST_CODES,  # noqa: F401 (found here through __getattr__)
        THROTTLE_CODES,  # noqa: F401 (found here through __getattr__)
        TRANSIENT_CODES,  # noqa: F401 (found here through __getattr__)
        classify_response,
        error_class_for,
        parse_retry_after,
        tls_error,
    )

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


_MOVED_TO_CLASSIFY = frozenset(
    {
        "AUTH_CODES",
        "INVALID_REQUEST_CODES",
        "THROTTLE_CODES",
        "TRANSIENT_CODES",
        "classify_response",
        "error_class_for",
        "parse_retry_after",
        "tls_error",
        "_as_int_code",
        "_clean_text",
        "_parse_http_date",
    }
)


def __getattr__(name: str) -> Any:
    """The names that moved to ``protocol.classify``, still found here (PEP 562) with a
    ``DeprecationWarning``: imported when first asked for, so that importing the hierarchy
    imports no protocol module."""
    if name in _MOVED_TO_CLASSIFY:
        import warnings

        from .protocol import classify

        warnings.warn(
            f"qianfan_export_wait.errors.{name} moved to "
            f"qianfan_export_wait.protocol.classify.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(classify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
