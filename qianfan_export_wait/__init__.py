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

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigurationError",
    "Credentials",
    "ExportFailedError",
    "ExportId",
    "ExportState",
    "ExportStatus",
    "ExportStatusClient",
    "ExportTimeoutError",
    "InvalidRequestError",
    "MissingCredentialsError",
    "QianfanError",
    "ResponseFormatError",
    "ThrottledError",
    "TransientError",
    "WaitError",
]

__version__ = "0.1.0"
