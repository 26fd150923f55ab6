"""Wait for Baidu Qianfan model-evaluation result exports: a signed async status client,
a rate-limited batch waiter on tenacity backoff, and a local simulator of the API."""

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
    ThrottledError,
    TransferError,
    TransientError,
    UnsafeArchiveError,
    WaitError,
)
from .extract import ExtractLimits, safe_extract
from .models import ExportId, ExportState, ExportStatus
from .waiter import (
    ExportOutcome,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    StateChange,
    WaiterStats,
    WaitReport,
    WaitReportError,
    wait_for_exports,
)

__all__ = [
    "ApiError",
    "AuthError",
    "ChecksumError",
    "ConfigurationError",
    "Credentials",
    "DownloadError",
    "DownloadProgress",
    "DownloadRecord",
    "DownloadSourceError",
    "Downloader",
    "ExportFailedError",
    "ExportId",
    "ExportOutcome",
    "ExportState",
    "ExportStatus",
    "ExportStatusClient",
    "ExportTimeoutError",
    "ExportWaiter",
    "ExtractLimits",
    "InvalidRequestError",
    "LinkExpiredError",
    "MissingCredentialsError",
    "OutcomeKind",
    "PollPolicy",
    "QianfanError",
    "ResponseFormatError",
    "StateChange",
    "ThrottledError",
    "TransferError",
    "TransientError",
    "UnsafeArchiveError",
    "WaitError",
    "WaitReport",
    "WaitReportError",
    "WaiterStats",
    "safe_extract",
    "wait_for_exports",
]

__version__ = "0.1.0"
