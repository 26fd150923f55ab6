"""Wait for Baidu Qianfan model-evaluation result exports: a signed async status client,
one long-lived rate-limited waiter on tenacity backoff, and a local simulator of the API."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import Credentials
    from .client import ExportStatusClient
    from .download import Downloader, DownloadProgress, DownloadRecord
    from .errors import (
        ApiError,
        AuthError,
        ChecksumError,
        ConfigurationError,
        DownloadError,
        DownloadSourceError,
        ExportFailedError,
        ExportTimeoutError,
        InvalidRequestError,
        LinkExpiredError,
        MissingCredentialsError,
        QianfanError,
        ResponseFormatError,
        ServiceUnavailableError,
        ThrottledError,
        TlsError,
        TransferError,
        TransientError,
        UnexpectedError,
        UnsafeArchiveError,
        WaiterClosedError,
        WaitError,
    )
    from .extract import ExtractLimits, safe_extract
    from .models import ExportId, ExportState, ExportStatus
    from .ratelimit import (
        AdaptiveRateLimiter,
        AsyncRateLimiter,
        FixedRateLimiter,
        RateLimiter,
        Reservation,
    )
    from .waiting import (
        Clock,
        ExportHandle,
        ExportOutcome,
        ExportWaiter,
        MonotonicClock,
        OutcomeKind,
        OutcomeStream,
        PollPolicy,
        StateChange,
        StatusClient,
        UpdateHook,
        VirtualClock,
        WaiterEvent,
        WaiterStats,
        WaitReport,
        WaitReportError,
        wait_for_exports,
    )

__all__ = [
    "AdaptiveRateLimiter",
    "ApiError",
    "AsyncRateLimiter",
    "AuthError",
    "ChecksumError",
    "Clock",
    "ConfigurationError",
    "Credentials",
    "DownloadError",
    "DownloadProgress",
    "DownloadRecord",
    "DownloadSourceError",
    "Downloader",
    "ExportFailedError",
    "ExportHandle",
    "ExportId",
    "ExportOutcome",
    "ExportState",
    "ExportStatus",
    "ExportStatusClient",
    "ExportTimeoutError",
    "ExportWaiter",
    "ExtractLimits",
    "FixedRateLimiter",
    "InvalidRequestError",
    "LinkExpiredError",
    "MissingCredentialsError",
    "MonotonicClock",
    "OutcomeKind",
    "OutcomeStream",
    "PollPolicy",
    "QianfanError",
    "RateLimiter",
    "Reservation",
    "ResponseFormatError",
    "ServiceUnavailableError",
    "StateChange",
    "StatusClient",
    "ThrottledError",
    "TlsError",
    "TransferError",
    "TransientError",
    "UnexpectedError",
    "UnsafeArchiveError",
    "UpdateHook",
    "VirtualClock",
    "WaitError",
    "WaitReport",
    "WaitReportError",
    "WaiterClosedError",
    "WaiterEvent",
    "WaiterStats",
    "safe_extract",
    "wait_for_exports",
]

__version__ = "0.1.0"

# Where each public name lives. Nothing is imported until a name is used, so that
# importing a submodule (the pytest plugin, the CLI's --help) stays light.
_HOMES: dict[str, str] = {
    "Credentials": "auth",
    "ExportStatusClient": "client",
    "Downloader": "download",
    "DownloadProgress": "download",
    "DownloadRecord": "download",
    "ApiError": "errors",
    "AuthError": "errors",
    "ChecksumError": "errors",
    "ConfigurationError": "errors",
    "DownloadError": "errors",
    "DownloadSourceError": "errors",
    "ExportFailedError": "errors",
    "ExportTimeoutError": "errors",
    "InvalidRequestError": "errors",
    "LinkExpiredError": "errors",
    "MissingCredentialsError": "errors",
    "QianfanError": "errors",
    "ResponseFormatError": "errors",
    "ServiceUnavailableError": "errors",
    "ThrottledError": "errors",
    "TlsError": "errors",
    "TransferError": "errors",
    "TransientError": "errors",
    "UnexpectedError": "errors",
    "UnsafeArchiveError": "errors",
    "WaiterClosedError": "errors",
    "WaitError": "errors",
    "ExtractLimits": "extract",
    "safe_extract": "extract",
    "ExportId": "models",
    "ExportState": "models",
    "ExportStatus": "models",
    "AdaptiveRateLimiter": "ratelimit",
    "AsyncRateLimiter": "ratelimit",
    "FixedRateLimiter": "ratelimit",
    "RateLimiter": "ratelimit",
    "Reservation": "ratelimit",
    "Clock": "waiting",
    "ExportHandle": "waiting",
    "ExportOutcome": "waiting",
    "ExportWaiter": "waiting",
    "MonotonicClock": "waiting",
    "OutcomeKind": "waiting",
    "OutcomeStream": "waiting",
    "PollPolicy": "waiting",
    "StateChange": "waiting",
    "StatusClient": "waiting",
    "UpdateHook": "waiting",
    "VirtualClock": "waiting",
    "WaiterEvent": "waiting",
    "WaiterStats": "waiting",
    "WaitReport": "waiting",
    "WaitReportError": "waiting",
    "wait_for_exports": "waiting",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
