"""Wait for Baidu Qianfan model-evaluation result exports: a signed async status client,
a rate-limited batch waiter on tenacity backoff, and a local simulator of the API."""

from .auth import Credentials
from .client import ExportStatusClient
from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ExportFailedError,
    ExportTimeoutError,
    InvalidRequestError,
    MissingCredentialsError,
    QianfanError,
    ResponseFormatError,
    ThrottledError,
    TransientError,
    WaitError,
)
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
    "ConfigurationError",
    "Credentials",
    "ExportFailedError",
    "ExportId",
    "ExportOutcome",
    "ExportState",
    "ExportStatus",
    "ExportStatusClient",
    "ExportTimeoutError",
    "ExportWaiter",
    "InvalidRequestError",
    "MissingCredentialsError",
    "OutcomeKind",
    "PollPolicy",
    "QianfanError",
    "ResponseFormatError",
    "StateChange",
    "ThrottledError",
    "TransientError",
    "WaitError",
    "WaitReport",
    "WaitReportError",
    "WaiterStats",
    "wait_for_exports",
]

__version__ = "0.1.0"
