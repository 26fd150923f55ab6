"""The simulator's knobs: fault rates and the rest of its configuration. Pure data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from .._checks import check_count, check_number
from ..errors import ConfigurationError

__all__ = [
    "API_CHOICES",
    "DOWNLOAD_FAULT_KINDS",
    "FAULT_KINDS",
    "ApiChoice",
    "DownloadFaultRates",
    "FaultRates",
    "QpsWindowKind",
    "SimulatorConfig",
]

FAULT_KINDS = ("http_500", "reset", "truncated", "code_336100", "slow")
"""The injectable faults, in the order one random draw is mapped onto them."""

DOWNLOAD_FAULT_KINDS = ("reset", "short_body", "forbidden", "wrong_md5", "slow")
"""The faults a file download can meet, in the order one draw is mapped onto them."""

QpsWindowKind = Literal["sliding", "fixed"]
ApiChoice = Literal["v1", "v2", "both"]
API_CHOICES: tuple[ApiChoice, ...] = ("v1", "v2", "both")
"""Which generations of the API the simulator serves."""


def _check_rate(name: str, value: object) -> float:
    rate = check_number(name, value, unit="probability", inclusive=True, maximum=1.0)
    assert rate is not None
    return rate


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability of each injected fault per request that passes auth and the QPS limit.

    ``http_500``: HTTP 500 with a plain-text body; ``reset``: the connection is aborted
    (RST) without an answer; ``truncated``: HTTP 200 whose JSON body is cut off (with an
    honest ``Content-Length``); ``code_336100``: HTTP 200 ``{"error_code": 336100}``;
    ``slow``: the normal answer after ``SimulatorConfig.slow_delay`` seconds.
    The rates must add up to at most 1.
    """

    http_500: float = 0.0
    reset: float = 0.0
    truncated: float = 0.0
    code_336100: float = 0.0
    slow: float = 0.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            _check_rate(f"fault rate {kind}", getattr(self, kind))
        if self.total > 1.0 + 1e-9:
            raise ConfigurationError(f"fault rates add up to {self.total:g}; at most 1 allowed")

    @classmethod
    def even(cls, total: float) -> FaultRates:
        """A combined rate ``total`` split evenly across the five fault kinds."""
        share = _check_rate("combined fault rate", total) / len(FAULT_KINDS)
        return cls(**dict.fromkeys(FAULT_KINDS, share))

    @property
    def total(self) -> float:
        """The probability that a request meets some fault."""
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, float]:
        """The rates by fault kind."""
        return {kind: float(getattr(self, kind)) for kind in FAULT_KINDS}


@dataclass(frozen=True, slots=True)
class DownloadFaultRates:
    """Probability of each fault per file request (local link or BOS ``GetObject``).

    ``reset``: half the body, then the connection is aborted (RST); ``short_body``: half
    the body under the full ``Content-Length``, then a clean close; ``forbidden``: HTTP 403
    ``AccessDenied`` for a local export's link (as an expired or revoked link answers; a
    BOS request is served normally); ``wrong_md5``: one byte of the body flipped, so the
    ``Content-MD5`` and ETag no longer match what arrives; ``slow``: the body spread over
    ``SimulatorConfig.slow_body_delay`` seconds. The rates must add up to at most 1.
    """

    reset: float = 0.0
    short_body: float = 0.0
    forbidden: float = 0.0
    wrong_md5: float = 0.0
    slow: float = 0.0

    def __post_init__(self) -> None:
        for kind in DOWNLOAD_FAULT_KINDS:
            _check_rate(f"download fault rate {kind}", getattr(self, kind))
        if self.total > 1.0 + 1e-9:
            raise ConfigurationError(
                f"download fault rates add up to {self.total:g}; at most 1 allowed"
            )

    @classmethod
    def even(cls, total: float) -> DownloadFaultRates:
        """A combined rate ``total`` split evenly across the five kinds."""
        share = _check_rate("combined download fault rate", total)
        return cls(**dict.fromkeys(DOWNLOAD_FAULT_KINDS, share / len(DOWNLOAD_FAULT_KINDS)))

    @property
    def total(self) -> float:
        """The probability that a file request meets some fault."""
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, float]:
        """The rates by fault kind."""
        return {kind: float(getattr(self, kind)) for kind in DOWNLOAD_FAULT_KINDS}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything about the simulator but its exports and credentials.

    ``seed`` makes export schedules, fault draws and log ids reproducible. ``qps`` caps
    accepted requests per second (``None``: no cap) on ``qps_window`` windows:
    ``"sliding"`` (never more than ``qps`` in any one second) or ``"fixed"`` (per whole
    second). A fractional ``qps`` of 1 or more is rounded down; below 1 it allows one
    request per ``1/qps`` seconds. ``retry_after`` adds a ``Retry-After`` header
    (seconds) to throttled answers.
    ``clock_skew`` shifts the simulator's wall clock (signature window and ``Date``
    header) by that many seconds. ``max_future_seconds`` is how far a signature's
    timestamp may lie ahead of the simulator's clock.

    Files of Done exports: ``file_sizes`` is the (low, high) range their sizes are drawn
    from, log-uniform and seeded per export (equal bounds: every file that size);
    ``download_faults`` the faults of file requests; ``slow_body_delay`` how long a slow
    body takes; ``link_ttl`` how many seconds a local export's ``downloadUrl`` stays valid.
    """

    seed: int = 0
    qps: float | None = None
    faults: FaultRates = field(default_factory=FaultRates)
    slow_delay: float = 2.0
    retry_after: float | None = None
    clock_skew: float = 0.0
    qps_window: QpsWindowKind = "sliding"
    max_future_seconds: float = 300.0
    file_sizes: tuple[int, int] = (4 * 1024, 1024 * 1024)
    download_faults: DownloadFaultRates = field(default_factory=DownloadFaultRates)
    slow_body_delay: float = 1.0
    link_ttl: int = 1800
    api: ApiChoice = "both"
    created_export_seconds: float = 3.0
    created_export_fail_ratio: float = 0.0
    create_faults: FaultRates | None = None

    def __post_init__(self) -> None:
        check_count("seed", self.seed, minimum=None)
        check_number(
            "qps",
            self.qps,
            unit="requests per second",
            minimum=1e-3,
            inclusive=True,
            maximum=1e9,
            allow_none=True,
        )
        if not isinstance(self.faults, FaultRates):
            raise ConfigurationError(f"faults must be a FaultRates, got {self.faults!r}")
        check_number("slow_delay", self.slow_delay, inclusive=True, maximum=3600.0)
        check_number(
            "retry_after", self.retry_after, inclusive=True, maximum=3600.0, allow_none=True
        )
        check_number(
            "clock_skew", self.clock_skew, minimum=-86400.0, inclusive=True, maximum=86400.0
        )
        if self.qps_window not in ("sliding", "fixed"):
            raise ConfigurationError(
                f"qps_window must be 'sliding' or 'fixed', got {self.qps_window!r}"
            )
        check_number("max_future_seconds", self.max_future_seconds, inclusive=True)
        low, high = self.file_sizes
        check_count("file_sizes[0]", low, maximum=2**32 - 2**16 - 1)
        check_count("file_sizes[1]", high, minimum=low, maximum=2**32 - 2**16 - 1)
        if not isinstance(self.download_faults, DownloadFaultRates):
            raise ConfigurationError(
                f"download_faults must be a DownloadFaultRates, got {self.download_faults!r}"
            )
        check_number("slow_body_delay", self.slow_body_delay, inclusive=True, maximum=3600.0)
        check_count("link_ttl", self.link_ttl, maximum=7 * 86400)
        if self.api not in API_CHOICES:
            raise ConfigurationError(f"api must be 'v1', 'v2' or 'both', got {self.api!r}")
        check_number(
            "created_export_seconds", self.created_export_seconds, inclusive=True, maximum=86400.0
        )
        check_number(
            "created_export_fail_ratio",
            self.created_export_fail_ratio,
            unit="fraction",
            inclusive=True,
            maximum=1.0,
        )
        if self.create_faults is not None and not isinstance(self.create_faults, FaultRates):
            raise ConfigurationError(
                f"create_faults must be a FaultRates or None, got {self.create_faults!r}"
            )

    def serves(self, generation: str) -> bool:
        """Whether generation ``"v1"`` or ``"v2"`` of the API is served."""
        return self.api in (generation, "both")

    def as_dict(self) -> dict[str, object]:
        """The configuration as a JSON-able dict."""
        return asdict(self)
