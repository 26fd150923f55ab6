"""OpenTelemetry spans: one per caller's wait, under the caller's span, with state changes
as events; status requests run in no caller's context (OpenTelemetry's SDK, in memory)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from waiter_support import make_waiter

from qianfan_export_wait import InvalidRequestError, OutcomeKind
from qianfan_export_wait.tracing import EVENTS_UP_TO, TracingObserver


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_wait_is_one_span_under_the_callers_span_with_state_changes_as_events(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    waiter, _, _ = make_waiter(
        {7: ["Pending", "Uploading", "Done"]}, observers=[TracingObserver(provider)]
    )
    tracer = provider.get_tracer("the-service")
    with tracer.start_as_current_span("handle request") as parent:
        status = await waiter.wait(7)
    assert status.state_name == "Done"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    wait = spans["qianfan_export_wait.wait"]
    assert wait.parent is not None
    assert wait.parent.span_id == parent.get_span_context().span_id
    assert wait.context.trace_id == parent.get_span_context().trace_id
    assert dict(wait.attributes or {}) == {
        "qianfan.wait_kind": "wait",
        "qianfan.export_id": 7,
        "qianfan.outcome": "done",
        "qianfan.state": "Done",
        "qianfan.log_id": "1",
        "qianfan.polls": 3,
    }
    events = [(e.name, dict(e.attributes or {})) for e in wait.events]
    assert [(name, a["qianfan.state"], a.get("qianfan.previous_state")) for name, a in events] == [
        ("state_change", "Pending", None),
        ("state_change", "Uploading", "Pending"),
    ]
    assert wait.status.status_code is StatusCode.UNSET


async def test_wait_all_is_one_span_with_its_tally_and_an_error_status_for_errors(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    script: dict[int | str, list[Any]] = {1: ["Done"], 2: ["Fail"], 3: [InvalidRequestError("x")]}
    waiter, _, _ = make_waiter(script, observers=[TracingObserver(provider)])
    report = await waiter.wait_all([1, 2, 3])
    assert report[3].kind is OutcomeKind.ERROR
    (span,) = exporter.get_finished_spans()
    assert span.name == "qianfan_export_wait.wait_all"
    attributes = dict(span.attributes or {})
    assert attributes["qianfan.export_count"] == 3
    assert (attributes["qianfan.outcomes.done"], attributes["qianfan.outcomes.failed"]) == (1, 1)
    assert attributes["qianfan.outcomes.error"] == 1
    assert span.status.status_code is StatusCode.ERROR


async def test_a_large_wait_gets_counts_not_an_event_per_change(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    ids = range(1, EVENTS_UP_TO + 2)
    observer = TracingObserver(provider)
    waiter, _, _ = make_waiter({i: ["Pending", "Done"] for i in ids}, observers=[observer])
    stream = waiter.as_completed(ids)
    assert len([outcome async for outcome in stream]) == len(ids)
    (span,) = exporter.get_finished_spans()
    assert span.name == "qianfan_export_wait.as_completed"
    assert span.events == ()
    assert dict(span.attributes or {})["qianfan.outcomes.done"] == len(ids)
    assert observer._watching == {}  # nothing kept after the wait


async def test_a_cancelled_wait_ends_its_span_as_cancelled(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    observer = TracingObserver(provider)
    waiter, _, _ = make_waiter({1: ["Running"]}, observers=[observer])
    task = asyncio.ensure_future(waiter.wait(1, timeout=None))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["qianfan.outcome"] == "cancelled"
    assert observer._watching == {}
    await waiter.aclose()


async def test_status_requests_run_in_no_callers_context(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A poll serves every caller of its export: an HTTP client's span for it must not
    land under whichever caller happened to start the dispatcher."""
    provider, _ = traced
    waiter, client, _ = make_waiter({1: ["Pending", "Done"], 2: ["Done"]}, observers=[])
    seen: list[trace.Span] = []
    fetch = client.fetch_once

    async def spying(export_id: int | str) -> Any:
        seen.append(trace.get_current_span())
        return await fetch(export_id)

    waiter._driver._fetch = spying
    with provider.get_tracer("svc").start_as_current_span("caller"):
        await waiter.wait_all([1, 2])
    assert seen and all(span is trace.INVALID_SPAN for span in seen)
