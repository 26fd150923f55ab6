"""The service's health as the waiter sees it: one export's run of failures (``Trouble``)
and an outage of the whole service (``Outage``)."""

from __future__ import annotations

from ..errors import ApiError, QianfanError, ServiceUnavailableError, UnexpectedAnswerError

__all__ = ["OUTAGE_AFTER_FAILURES", "Outage", "Trouble", "no_answer", "timeout_error"]

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
    """The service gives no answers: only one probe is in flight, on a capped backoff
    (``probe``: the entry whose poll is the probe, compared by identity)."""

    __slots__ = ("last_error", "probe", "probe_attempt", "probe_due", "started")

    def __init__(self, started: float, last_error: ApiError) -> None:
        self.started = started
        self.last_error = last_error
        self.probe: object | None = None
        self.probe_attempt = 0
        self.probe_due = started


def no_answer(unavailable_for: float, last_error: ApiError) -> QianfanError:
    """What an export that got no usable answer carries: the protocol error itself if
    the service did answer (about another export), else ``ServiceUnavailableError``."""
    if isinstance(last_error, UnexpectedAnswerError):
        return last_error
    return ServiceUnavailableError(unavailable_for, last_error)


def timeout_error(
    trouble: Trouble | None, started: float, outage: Outage | None, now: float
) -> QianfanError | None:
    """What a timeout carries for an export waited on since ``started`` (with its run of
    failures, ``trouble``): why no answer came, if the service was not answering."""
    if trouble is not None:
        return no_answer(max(0.0, now - trouble.since), trouble.last_error)
    if outage is None:
        return None
    since = max(outage.started, started)
    return ServiceUnavailableError(max(0.0, now - since), outage.last_error)
