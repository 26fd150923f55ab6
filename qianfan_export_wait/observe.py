"""What a waiter tells the world while it runs: the one seam that metrics, traces and
the ``on_poll`` hook hang on.

The waiter calls an ``Observer`` at a few points only:

* ``request``: a status request ended (``PollEvent``: its kind, latency, ``log_id``);
* ``wait``: a caller began to wait (``submit``/``wait``, ``wait_all``, ``as_completed``);
  the ``WaitScope`` it returns gets each of that caller's outcomes, then ``end``;
* ``state_changed`` and ``finished``: a state change, an export's final outcome (what
  ``on_update`` gets);
* ``bind``: once, with the waiter, whose ``stats`` and ``limiter`` an observer may read
  whenever it likes (gauges are read when scraped, never pushed).

Every integration is optional: ``prometheus_client`` and ``opentelemetry`` are imported
only when installed and asked for (``integrations.default_observers``), never by this
module, which imports nothing of ``waiting/`` either (the waiter imports it).
An observer that raises is logged once per kind of exception and otherwise ignored: it
never ends a wait nor loses an export.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ThrottledError,
    TransientError,
    UnexpectedAnswerError,
)
from .models import ExportId, ExportStatus

if TYPE_CHECKING:
    from .waiting.outcomes import ExportOutcome, StateChange
    from .waiting.waiter import ExportWaiter

__all__ = [
    "MAX_HOOK_TASKS",
    "NO_OBSERVERS",
    "OUTCOME_KINDS",
    "Observer",
    "PollEvent",
    "PollHook",
    "RequestKind",
    "WaitScope",
    "classify_request",
]

logger = logging.getLogger("qianfan_export_wait")


class RequestKind(str, enum.Enum):
    """How one status request ended (a metric label: six values, never more)."""

    OK = "ok"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AUTH = "auth"
    INVALID = "invalid"
    UNEXPECTED = "unexpected"

    def __str__(self) -> str:
        return self.value


def classify_request(error: BaseException | None) -> RequestKind:
    """The ``RequestKind`` of a request that raised ``error`` (``None``: it answered)."""
    if error is None:
        return RequestKind.OK
    if isinstance(error, ThrottledError):
        return RequestKind.THROTTLED
    if isinstance(error, UnexpectedAnswerError):  # an answer about another export
        return RequestKind.UNEXPECTED
    if isinstance(error, TransientError):
        return RequestKind.TRANSIENT
    if isinstance(error, AuthError):
        return RequestKind.AUTH
    if isinstance(error, ApiError):
        return RequestKind.INVALID
    return RequestKind.UNEXPECTED


@dataclass(frozen=True, slots=True)
class PollEvent:
    """One status request and its answer, as ``on_poll`` and observers get it.

    ``status`` is set when the service answered with a status, ``error`` otherwise;
    ``latency`` is seconds on the waiter's clock from sending to the answer.
    """

    export_id: ExportId
    kind: RequestKind
    status: ExportStatus | None
    error: BaseException | None
    log_id: str | None
    latency: float


PollSink = Callable[[ExportId, ExportStatus | None, BaseException | None, float], None]
"""What the driver calls after each request: id, status or error, latency."""

PollHook = Callable[[PollEvent], object]
"""The type of ``ExportWaiter(on_poll=...)``: a function or an ``async def``."""


class WaitScope(Protocol):
    """One caller's wait, as an observer follows it."""

    def outcome(self, outcome: ExportOutcome) -> None:
        """One of the caller's outcomes (``elapsed``: since the caller began)."""

    def end(self, error: BaseException | None = None) -> None:
        """The wait is over: every outcome given, or ``error`` (cancelled, closed)."""


class Observer:
    """Watches a waiter; override what you need (every method does nothing here)."""

    def bind(self, waiter: ExportWaiter) -> None:
        """The waiter observed (called once, when it is made)."""

    def request(self, event: PollEvent) -> None:
        """A status request ended."""

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> WaitScope | None:
        """A caller began to wait (``how``: ``wait``, ``wait_all`` or ``as_completed``),
        in the caller's own context; return a scope to follow it, or ``None``."""
        return None

    def state_changed(self, change: StateChange) -> None:
        """An export moved to a new non-terminal state."""

    def finished(self, outcome: ExportOutcome) -> None:
        """An export's final outcome (once per export, whatever its callers)."""


OUTCOME_KINDS = ("done", "failed", "error", "timeout", "pending")
"""The values of ``OutcomeKind`` (metric labels), spelled here so that observers need
not import ``waiting/``, which imports this module."""

NO_OBSERVERS: tuple[Observer, ...] = ()
"""Pass as ``ExportWaiter(observers=NO_OBSERVERS)`` for no metrics nor traces."""


MAX_HOOK_TASKS = 1000
"""``async def`` hook calls of one waiter running at once; a call beyond it is dropped."""


class Guard:
    """Calls user code (hooks, observers) so that it can never hurt a wait: an exception
    is logged with its traceback the first time per (what, kind of exception), at debug
    level afterwards; an ``async def`` hook's coroutine runs in a task of its own, off the
    polling path, at most ``max_tasks`` at once (a hook slower than the polls loses calls,
    counted in ``dropped``, rather than piling up tasks), and ``aclose`` waits for those
    still running."""

    def __init__(self, max_tasks: int = MAX_HOOK_TASKS) -> None:
        self._logged: set[tuple[str, type[BaseException]]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._max_tasks = max_tasks
        self._dropped_by: set[str] = set()
        self.dropped = 0

    def failed(self, what: str, error: BaseException) -> None:
        """Log ``error`` raised by ``what``, once per kind."""
        key = (what, type(error))
        if key in self._logged:
            logger.debug("%s raised again: %r", what, error)
            return
        self._logged.add(key)
        logger.error(
            "%s raised %s; ignored (later ones logged at debug level)",
            what,
            type(error).__name__,
            exc_info=error,
        )

    def call(self, what: str, hook: Callable[[Any], object], argument: object) -> None:
        """``hook(argument)``; a coroutine it returns is run as a task."""
        try:
            result = hook(argument)
        except Exception as error:
            self.failed(what, error)
            return
        if inspect.isawaitable(result):
            self._start(what, result)

    def _start(self, what: str, awaitable: Awaitable[object]) -> None:
        if len(self._tasks) >= self._max_tasks:
            self._drop(what, awaitable)
            return

        async def run() -> None:
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.failed(what, error)

        try:
            task = asyncio.get_running_loop().create_task(run())
        except RuntimeError:  # no loop (a hook called at shutdown): nothing can run it
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, what: str, awaitable: Awaitable[object]) -> None:
        """Never run ``awaitable``: ``max_tasks`` hook tasks are running already."""
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        self.dropped += 1
        if what in self._dropped_by:
            logger.debug("%s: call dropped (%d hook tasks running)", what, len(self._tasks))
            return
        self._dropped_by.add(what)
        logger.warning(
            "%s is slower than the polls: %d hook tasks are running, so calls are dropped "
            "until some end (later drops logged at debug level)",
            what,
            len(self._tasks),
        )

    @property
    def running(self) -> int:
        """Hook tasks not finished yet."""
        return len(self._tasks)

    async def aclose(self, grace: float = 5.0) -> None:
        """Wait up to ``grace`` seconds for hook tasks still running, then cancel them."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            logger.warning("%d hook tasks still running at close were cancelled", len(late))
            await asyncio.wait(late)


class _Scopes:
    """The scopes of one caller's wait, each guarded."""

    __slots__ = ("_guard", "_scopes")

    def __init__(self, scopes: list[WaitScope], guard: Guard) -> None:
        self._scopes = scopes
        self._guard = guard

    def outcome(self, outcome: ExportOutcome) -> None:
        for scope in self._scopes:
            try:
                scope.outcome(outcome)
            except Exception as error:
                self._guard.failed(f"observer scope {type(scope).__name__}", error)

    def end(self, error: BaseException | None = None) -> None:
        scopes, self._scopes = self._scopes, []  # once only
        for scope in scopes:
            try:
                scope.end(error)
            except Exception as failure:
                self._guard.failed(f"observer scope {type(scope).__name__}", failure)

    def follow(self, future: asyncio.Future[ExportOutcome]) -> None:
        """End with ``future``'s outcome (a handle's) when it is done."""
        future.add_done_callback(self._settle)

    def _settle(self, future: asyncio.Future[ExportOutcome]) -> None:
        if future.cancelled():
            self.end(asyncio.CancelledError())
            return
        error = future.exception()
        if error is None:
            self.outcome(future.result())
        self.end(error)


class Instruments:
    """What a waiter holds: its observers, its ``on_poll`` hook and the guard around
    them; ``poll`` is ``None`` when nobody listens to requests (the driver then
    measures nothing)."""

    def __init__(
        self,
        observers: Iterable[Observer],
        on_poll: PollHook | None,
        guard: Guard,
    ) -> None:
        self.observers = list(observers)
        for observer in self.observers:
            if not isinstance(observer, Observer):
                raise ConfigurationError(
                    f"observers must be Observer instances, got {type(observer).__name__}"
                )
        self.on_poll = on_poll
        self.guard = guard
        self._requests = [o for o in self.observers if type(o).request is not Observer.request]
        self._changes = [
            o for o in self.observers if type(o).state_changed is not Observer.state_changed
        ]
        self._finishes = [o for o in self.observers if type(o).finished is not Observer.finished]
        self._waits = [o for o in self.observers if type(o).wait is not Observer.wait]
        self.poll: PollSink | None = self._poll if (self._requests or on_poll is not None) else None
        self.events = bool(self._changes or self._finishes)

    def bind(self, waiter: ExportWaiter) -> None:
        for observer in self.observers:
            try:
                observer.bind(waiter)
            except Exception as error:
                self.guard.failed(f"observer {type(observer).__name__}.bind", error)

    def _poll(
        self,
        export_id: ExportId,
        status: ExportStatus | None,
        error: BaseException | None,
        latency: float,
    ) -> None:
        log_id = status.log_id if status is not None else getattr(error, "log_id", None)
        event = PollEvent(export_id, classify_request(error), status, error, log_id, latency)
        guard = self.guard
        for observer in self._requests:
            try:
                observer.request(event)
            except Exception as failure:
                guard.failed(f"observer {type(observer).__name__}.request", failure)
        if self.on_poll is not None:
            guard.call("on_poll hook", self.on_poll, event)

    def state_changed(self, change: StateChange) -> None:
        for observer in self._changes:
            try:
                observer.state_changed(change)
            except Exception as failure:
                self.guard.failed(f"observer {type(observer).__name__}.state_changed", failure)

    def finished(self, outcome: ExportOutcome) -> None:
        for observer in self._finishes:
            try:
                observer.finished(outcome)
            except Exception as failure:
                self.guard.failed(f"observer {type(observer).__name__}.finished", failure)

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> _Scopes | None:
        """The scopes of a caller beginning to wait (``None`` when nobody follows)."""
        if not self._waits:
            return None
        scopes: list[WaitScope] = []
        for observer in self._waits:
            try:
                scope = observer.wait(how, export_ids)
            except Exception as failure:
                self.guard.failed(f"observer {type(observer).__name__}.wait", failure)
                continue
            if scope is not None:
                scopes.append(scope)
        return _Scopes(scopes, self.guard) if scopes else None


def observed_fetch(
    fetch: Callable[[ExportId], Awaitable[ExportStatus]],
    sink: PollSink | None,
    clock: Any,
) -> Callable[[ExportId], Awaitable[ExportStatus]]:
    """``fetch`` telling ``sink`` of each answer and its latency on ``clock`` (``fetch``
    itself when nobody listens). Every request the driver sends goes through it, the
    scheduled polls and a download's fresh-link requests alike."""
    if sink is None:
        return fetch

    async def fetch_observed(export_id: ExportId) -> ExportStatus:
        sent = clock.now()
        try:
            status = await fetch(export_id)
        except Exception as error:
            sink(export_id, None, error, clock.now() - sent)
            raise
        sink(export_id, status, None, clock.now() - sent)
        return status

    return fetch_observed


def observed_stream(stream_type: type[Any]) -> type[Any]:
    """A subclass of ``OutcomeStream`` that shows each outcome it yields to a scope and
    ends the scope when the stream ends or is left (made once, on first use)."""
    global _OBSERVED_STREAM
    if _OBSERVED_STREAM is not None:
        return _OBSERVED_STREAM

    class ObservedStream(stream_type):  # type: ignore[misc]
        __slots__ = ("_scope",)
        _scope: Any

        def _next_ready(self) -> Any:
            outcome = super()._next_ready()
            scope = self._scope
            if scope is not None:
                scope.outcome(outcome)
            return outcome

        async def __anext__(self) -> Any:
            try:
                return await super().__anext__()
            except StopAsyncIteration:
                self._end(None)
                raise
            except asyncio.CancelledError:
                raise  # the reader may come back (wait_for); leaving the stream ends it
            except BaseException as error:
                self._end(error)
                raise

        def release(self) -> None:
            super().release()
            self._end(None)

        def _end(self, error: BaseException | None) -> None:
            scope, self._scope = self._scope, None
            if scope is not None:
                scope.end(error)

    _OBSERVED_STREAM = ObservedStream
    return ObservedStream


_OBSERVED_STREAM: type[Any] | None = None
