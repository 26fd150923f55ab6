"""OpenTelemetry spans of waiters (the ``otel`` extra: ``opentelemetry-api``).

One span per caller's wait, started in the caller's context (so its parent is the
caller's current span) and ended with its outcome; state changes are span events. The
status requests get no spans here: one poll serves every caller of an export, so it
belongs to no single caller's trace; aiohttp's own instrumentation
(``opentelemetry-instrumentation-aiohttp-client``) makes a span per request, in a context
of its own. See docs/operations.md.

``opentelemetry`` is imported where it is used (making an observer), so importing this
module costs nothing; the library makes one only when the package is installed
(``integrations.default_observers``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .models import ExportId
from .observe import Observer

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from .waiting.outcomes import ExportOutcome, StateChange

__all__ = ["EVENTS_UP_TO", "SPAN_PREFIX", "TracingObserver"]

SPAN_PREFIX = "qianfan_export_wait."
"""Span names: ``qianfan_export_wait.wait``, ``.wait_all`` and ``.as_completed``."""

EVENTS_UP_TO = 64
"""A wait for more exports than this gets counts, not an event per state change."""


def _error_status(description: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


class _WaitSpan:
    """One caller's wait as a span."""

    __slots__ = ("_ids", "_observer", "_polls", "_single", "_tally", "span")

    def __init__(
        self, observer: TracingObserver, span: Span, ids: Sequence[ExportId], single: bool
    ) -> None:
        self.span = span
        self._observer = observer
        self._ids = ids
        self._single = single
        self._tally: Counter[str] = Counter()
        self._polls = 0

    def outcome(self, outcome: ExportOutcome) -> None:
        span = self.span
        self._tally[outcome.kind.value] += 1
        self._polls += outcome.polls
        if self._single:
            span.set_attribute("qianfan.outcome", outcome.kind.value)
            if outcome.status is not None:
                span.set_attribute("qianfan.state", outcome.status.state_name)
            log_id = getattr(outcome.status, "log_id", None) or getattr(
                outcome.error, "log_id", None
            )
            if log_id:
                span.set_attribute("qianfan.log_id", str(log_id))
        if outcome.kind == "error" and outcome.error is not None:
            span.set_status(_error_status(type(outcome.error).__name__))

    def end(self, error: BaseException | None = None) -> None:
        span = self.span
        self._observer._forget(self)
        span.set_attribute("qianfan.polls", self._polls)
        if not self._single:
            for kind, count in self._tally.items():
                span.set_attribute(f"qianfan.outcomes.{kind}", count)
        if isinstance(error, asyncio.CancelledError):
            span.set_attribute("qianfan.outcome", "cancelled")
        elif error is not None:
            span.record_exception(error)
            span.set_status(_error_status(type(error).__name__))
        span.end()

    def ids(self) -> Sequence[ExportId]:
        return self._ids


class TracingObserver(Observer):
    """Spans of a waiter's callers, from ``tracer_provider`` (default: the global one)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace

        from . import __version__

        self._tracer = trace.get_tracer(
            "qianfan_export_wait", __version__, tracer_provider=tracer_provider
        )
        self._internal = trace.SpanKind.INTERNAL
        # Export id -> the spans that want its state changes as events.
        self._watching: dict[ExportId, list[_WaitSpan]] = {}

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> _WaitSpan:
        single = how == "wait"
        attributes: dict[str, Any] = {"qianfan.wait_kind": how}
        if single:
            attributes["qianfan.export_id"] = export_ids[0]
        else:
            attributes["qianfan.export_count"] = len(export_ids)
        span = self._tracer.start_span(
            SPAN_PREFIX + how, kind=self._internal, attributes=attributes
        )
        scope = _WaitSpan(self, span, export_ids if len(export_ids) <= EVENTS_UP_TO else (), single)
        watching = self._watching
        for export_id in scope.ids():
            watching.setdefault(export_id, []).append(scope)
        return scope

    def state_changed(self, change: StateChange) -> None:
        event = change
        scopes = self._watching.get(event.export_id)
        if not scopes:
            return
        attributes = {
            "qianfan.export_id": event.export_id,
            "qianfan.state": event.state,
            "qianfan.polls": event.polls,
        }
        if event.previous is not None:
            attributes["qianfan.previous_state"] = event.previous
        for scope in scopes:
            scope.span.add_event("state_change", attributes)

    def _forget(self, scope: _WaitSpan) -> None:
        watching = self._watching
        for export_id in scope.ids():
            scopes = watching.get(export_id)
            if scopes is None:
                continue
            if scope in scopes:
                scopes.remove(scope)
            if not scopes:
                del watching[export_id]
