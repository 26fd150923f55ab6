"""The command line's ``--metrics-port``: Prometheus metrics served during a run (the
``metrics`` extra), checked before any request is sent."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from .exits import UsageError

__all__ = ["check_metrics_port", "metrics_served"]

logger = logging.getLogger("qianfan_export_wait")

_INSTALL = (
    "pip install 'qianfan-export-wait[metrics]' (from a checkout: pip install -e '.[metrics]')"
)


def check_metrics_port(port: int | None) -> None:
    """Bad usage if ``--metrics-port`` was given without ``prometheus_client``."""
    if port is None:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(f"--metrics-port {port} needs prometheus_client: {_INSTALL}") from None


@contextlib.asynccontextmanager
async def metrics_served(port: int | None, host: str = "127.0.0.1") -> AsyncIterator[None]:
    """Serve the default registry at ``http://host:port/metrics`` during the block (no
    ``port``: nothing)."""
    if port is None:
        yield
        return
    from ..metrics import serve_metrics

    async with serve_metrics(port, host=host) as bound:
        logger.info("metrics at http://%s:%d/metrics", host, bound)
        yield
