"""The service's health as the waiter sees it: one export's run of failures (``Trouble``)
and an outage of the whole service (``Outage``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ApiError

if TYPE_CHECKING:
    from .entries import Entry

__all__ = ["OUTAGE_AFTER_FAILURES", "Outage", "Trouble"]

OUTAGE_AFTER_FAILURES = 8
"""Transient failures in a row, with no answer between them, that make an outage."""


class Trouble:
    """An export that gets no answer: since when, how many failures in a row, the last."""

    __slots__ = ("errors_in_row", "last_error", "since")

    def __init__(self, since: float, error: ApiError) -> None:
        self.since = since
        self.errors_in_row = 0
        self.last_error = error


class Outage:
    """The service gives no answers: only one probe is in flight, on a capped backoff."""

    __slots__ = ("last_error", "probe", "probe_attempt", "probe_due", "started")

    def __init__(self, started: float, last_error: ApiError) -> None:
        self.started = started
        self.last_error = last_error
        self.probe: Entry | None = None
        self.probe_attempt = 0
        self.probe_due = started
