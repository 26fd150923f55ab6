"""What an answer means: how a poll's result (a status, or the error its request raised)
moves an export, the service's health and the credentials' standing.

``Scheduler.answer`` hands each result here and returns the ``Reply`` that says what the
driver must do about it (nothing, mostly). Pure bookkeeping: time is passed in.
"""

from __future__ import annotations

import logging
from enum import Enum
from math import inf
from typing import TYPE_CHECKING, NamedTuple

from ..errors import (
    ApiError,
    AuthError,
    ClientClosedError,
    DownloadError,
    ServiceUnavailableError,
    ThrottledError,
    TransientError,
    UnexpectedAnswerError,
    UnexpectedError,
)
from ..models import ExportStatus
from .entries import Entry
from .health import OUTAGE_AFTER_FAILURES, Outage, Trouble, no_answer
from .outcomes import TERMINAL_KINDS, OutcomeKind, StateChange
from .policy import PROBE_MAX_DELAY
from .statuses import COMPACT_ABOVE

if TYPE_CHECKING:
    from ..models import DownloadRecord
    from .core import Scheduler

__all__ = ["Action", "Downloaded", "Reply", "answer"]

logger = logging.getLogger("qianfan_export_wait")


class Action(Enum):
    """What the driver must do after an answer."""

    NOTHING = "nothing"
    DOWNLOAD = "download"  # the export is Done: fetch its file, then report ``Downloaded``
    THROTTLED = "throttled"  # tell the limiter, holding polls back for ``pause``
    AUTH_FAILED = "auth_failed"  # cancel every other poll in flight
    UNEXPECTED = "unexpected"  # not an API error: log ``error``


class Reply(NamedTuple):
    """What the driver must do after an answer: ``action``, with the throttle's ``pause``
    or the ``error`` to log; ``first`` says an auth failure is the first of a cool-down
    (worth a log line)."""

    action: Action
    pause: float | None = None
    error: BaseException | None = None
    first: bool = False


class Downloaded(NamedTuple):
    """The file of a ``Done`` export was fetched (``record``), or could not be (``error``)."""

    record: DownloadRecord | None = None
    error: DownloadError | None = None


NOTHING = Reply(Action.NOTHING)
DOWNLOAD = Reply(Action.DOWNLOAD)


class PollCancelled(Exception):
    """A poll or download was cancelled: nobody wanted it, or the waiter closed (the
    driver's word for it, so that this pure room needs no asyncio)."""


CANCELLED = PollCancelled()


def answer(
    core: Scheduler, entry: Entry, result: ExportStatus | BaseException | Downloaded, now: float
) -> Reply:
    """``entry``'s poll ended with ``result``: a status, the exception the request raised
    (``CANCELLED``: nobody wanted it, or the waiter closed), or a file ``Downloaded``.
    Returns what the driver must do (``NOTHING``, mostly)."""
    if type(result) is not ExportStatus and not isinstance(result, ExportStatus):
        return _answer_other(core, entry, result, now)
    # A status: the usual answer, handled here without another call.
    status = result
    entry.in_flight = False
    entry.answered = now
    if entry.trouble is not None or core.failures_in_row or not core.proven:
        answered(core, entry, now)
    state = status.state
    kind = TERMINAL_KINDS.get(state)
    if kind is not None:
        core.statuses.remember(entry, status, pack=False)
        if kind is OutcomeKind.DONE and core.downloads:
            entry.in_flight = True  # no deadline ends it now: the file is coming
            return DOWNLOAD
        core.finish(entry, kind, now)
        return NOTHING
    previous = entry.state
    core.statuses.remember(entry, status, pack=len(core.entries) > COMPACT_ABOVE)
    notify = core.notify
    if previous != state and notify is not None:
        notify(
            StateChange(
                entry.export_id,
                None if previous is None else str(previous),
                status.state_name,
                status,
                entry.polls,
                now - entry.started,
            )
        )
    if entry.deadline > now or core.expire_callers_of(entry, now):
        if entry.look is None and entry.deadline < inf:
            core.replan(entry)  # a later caller's deadline, if any, is owed a look
        attempt = entry.attempt = entry.attempt + 1
        due = now + core.poll_schedule.delay(attempt, started=entry.started, now=now, result=status)
        core.schedule(entry, due)
    return NOTHING


def _answer_other(
    core: Scheduler, entry: Entry, result: BaseException | Downloaded, now: float
) -> Reply:
    """``answer`` for anything but a status."""
    if isinstance(result, Downloaded):
        entry.in_flight = False
        if entry.callers is not None:
            core.finish(
                entry, OutcomeKind.DONE, now, file=result.record, download_error=result.error
            )
        return NOTHING
    if isinstance(result, PollCancelled):
        on_cancelled(core, entry)
        return NOTHING
    if isinstance(result, ThrottledError):
        # Held back by the pause it asks for, but never past when last looks must begin.
        pause = core.pause_for(result.retry_after, now)
        on_throttled(core, entry, result, now)
        return Reply(Action.THROTTLED, pause=pause)
    if isinstance(result, TransientError):
        on_transient(core, entry, result, now)
        return NOTHING
    if isinstance(result, AuthError):
        first = core.auth_refusal(now) is None  # not within a cool-down
        on_auth_error(core, entry, result, now)
        return Reply(Action.AUTH_FAILED, error=result, first=first)
    if isinstance(result, ApiError):
        on_rejected(core, entry, result, now)
        return NOTHING
    if isinstance(result, ClientClosedError):  # every poll would fail alike
        core.end_all(result, now)
        return Reply(Action.UNEXPECTED, error=result)
    # A closed session, a bug in a custom client: this export ends, the others go on.
    on_unexpected(core, entry, result, now)
    return Reply(Action.UNEXPECTED, error=result)


def on_throttled(core: Scheduler, entry: Entry, error: ThrottledError, now: float) -> None:
    """The server refused the poll for the account's rate limit."""
    answered(core, entry, now)
    core.throttled += 1
    # A throttle tells nothing: the look is owed again, for the nearest deadline.
    entry.sent = -inf
    core.replan(entry)
    if core.expire_callers_of(entry, now):
        # Not an answer about the export: back in line without spending its backoff.
        core.schedule(entry, now + (core.policy.bounded_retry_after(error.retry_after) or 0.0))


def on_transient(core: Scheduler, entry: Entry, error: TransientError, now: float) -> None:
    """No usable answer (connection refused, 5xx, reset, timeout, bad body)."""
    entry.in_flight = False
    core.retries += 1
    was_answer = isinstance(error, UnexpectedAnswerError)
    if was_answer:  # an answer, about another export: the service is up
        trouble = entry.trouble
        answered(core, entry, now)
        entry.trouble = trouble
    else:
        core.failures_in_row += 1
    outage = core.outage
    trouble = entry.trouble
    if trouble is None:
        # Within an outage, unavailable since it began (or since it was asked for).
        since = now if outage is None else max(outage.started, entry.started)
        trouble = entry.trouble = Trouble(since, error)
    trouble.errors_in_row += 1
    trouble.last_error = error
    if outage is not None:
        outage.last_error = error
        if outage.probe is entry:
            _probe_failed(core, outage, entry, now)
    elif not was_answer and core.failures_in_row >= OUTAGE_AFTER_FAILURES:
        _start_outage(core, error, now)
    if entry.callers is None or not core.expire_callers_of(entry, now):
        return
    if entry.look is None:
        core.replan(entry)
    if _gave_up(core, entry, error, now):
        return
    policy = core.policy
    delay = core.retry_schedule.delay(
        trouble.errors_in_row, started=entry.started, now=now, error=error
    )
    if error.retry_after is not None:
        delay = policy.bounded_retry_after(error.retry_after) or 0.0
    budget = policy.max_unavailable
    if budget is not None and trouble.since + budget - now < delay:
        delay = max(trouble.since + budget - now, 0.0)  # looked at again when it runs out
    logger.debug("export %r: %s; retrying in %.2f s", entry.export_id, error, delay)
    core.schedule(entry, now + delay)


def on_rejected(core: Scheduler, entry: Entry, error: ApiError, now: float) -> None:
    """An answer that this export's request can never succeed (e.g. unknown id)."""
    answered(core, entry, now)
    logger.debug("export %r: %s", entry.export_id, error)
    core.finish(entry, OutcomeKind.ERROR, now, error)


def on_auth_error(core: Scheduler, entry: Entry, error: AuthError, now: float) -> None:
    """Credentials rejected: every export ends with ``error``, and new callers get it at
    once until ``policy.auth_cooldown`` has passed (``auth_refusal``); then one request
    at a time tries again."""
    entry.in_flight = False
    core.auth_error = error
    core.auth_failed_at = now
    core.proven = False
    core.end_all(error, now)


def on_cancelled(core: Scheduler, entry: Entry) -> None:
    """The poll of ``entry`` was cancelled (nobody wanted it, or the waiter closed)."""
    entry.in_flight = False
    outage = core.outage
    if outage is not None and outage.probe is entry:
        outage.probe = None


def on_unexpected(core: Scheduler, entry: Entry, error: BaseException, now: float) -> None:
    """Not an API error (a strategy, a limiter or the client raised): the export ends as
    ``error`` carrying it, and the other exports go on."""
    on_cancelled(core, entry)
    wrapped = UnexpectedError(error, f"polling export {entry.export_id!r}")
    if entry.callers is not None:
        core.finish(entry, OutcomeKind.ERROR, now, wrapped)


def answered(core: Scheduler, entry: Entry, now: float) -> None:
    """The service answered (status, throttle or refusal): it is up, and the credentials
    work."""
    entry.in_flight = False
    if entry.trouble is None and not core.failures_in_row and core.proven:
        return  # nothing to reset: the usual case
    entry.trouble = None
    core.proven = True
    core.auth_error = None
    core.failures_in_row = 0
    if core.outage is not None:
        _end_outage(core, now)


def _start_outage(core: Scheduler, error: TransientError, now: float) -> None:
    outage = core.outage = Outage(now, error)
    outage.probe_due = now + _probe_delay(core, 1, error, now)
    logger.warning(
        "the service is not answering (%d requests in a row failed, last: %s); "
        "polling paused, one probe at a time until it answers",
        core.failures_in_row,
        error,
    )


def _probe_delay(core: Scheduler, attempt: int, error: BaseException, now: float) -> float:
    delay = core.retry_schedule.delay(attempt, started=now, now=now, error=error)
    return min(delay, PROBE_MAX_DELAY)


def _probe_failed(core: Scheduler, outage: Outage, entry: Entry, now: float) -> None:
    outage.probe = None
    outage.probe_attempt += 1
    outage.probe_due = now + _probe_delay(core, outage.probe_attempt, outage.last_error, now)
    budget = core.policy.max_unavailable
    if budget is None or now - outage.started < budget:
        return
    error = outage.last_error
    for other in list(core.entries.values()):
        if other is entry or other.in_flight:
            continue
        trouble = other.trouble
        since = max(outage.started, other.started) if trouble is None else trouble.since
        if now - since >= budget:
            core.finish(other, OutcomeKind.ERROR, now, ServiceUnavailableError(now - since, error))


def _end_outage(core: Scheduler, now: float) -> None:
    outage = core.outage
    assert outage is not None
    core.outage = None
    retried = 0
    queue = core.queue
    for entry in core.entries.values():
        if entry.trouble is not None and not entry.in_flight:
            due = queue.due_time(entry)
            if due is None or due > now:
                queue.push(entry, now)
            retried += 1
    logger.warning(
        "the service answers again after %.1f s; re-polling %d exports that saw errors",
        now - outage.started,
        retried,
    )


def _gave_up(core: Scheduler, entry: Entry, error: TransientError, now: float) -> bool:
    legacy = core.policy.max_consecutive_errors
    trouble = entry.trouble
    assert trouble is not None
    if legacy is not None and trouble.errors_in_row >= legacy:
        core.finish(entry, OutcomeKind.ERROR, now, error)
        return True
    budget = core.policy.max_unavailable
    since = trouble.since
    if budget is not None and now - since >= budget:
        core.finish(entry, OutcomeKind.ERROR, now, no_answer(now - since, error))
        return True
    return False
