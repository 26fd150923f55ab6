"""The observers a waiter gets by default: Prometheus metrics when ``prometheus_client``
is installed, OpenTelemetry spans when ``opentelemetry-api`` is, none otherwise.

Each integration's module is imported here, inside ``default_observers``, and only when
its package is installed; it imports its package where it uses it.
"""

from __future__ import annotations

import importlib.util
import logging

from .observe import Observer

__all__ = ["default_observers"]

logger = logging.getLogger("qianfan_export_wait")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked (sys.modules[name] = None) or broken
        return False


def default_observers() -> list[Observer]:
    """Prometheus metrics on the default registry when ``prometheus_client`` is
    installed, OpenTelemetry spans when ``opentelemetry-api`` is; none otherwise."""
    observers: list[Observer] = []
    if _installed("prometheus_client"):
        try:
            from .metrics import PrometheusObserver

            observers.append(PrometheusObserver())
        except ImportError:  # present but unusable: metrics stay off
            logger.debug("prometheus_client is not importable; no metrics")
    if _installed("opentelemetry") and _installed("opentelemetry.trace"):
        try:
            from .tracing import TracingObserver

            observers.append(TracingObserver())
        except ImportError:
            logger.debug("opentelemetry-api is not importable; no spans")
    return observers
