"""``ExportWaiter``: one long-lived scheduler that every caller in a process waits through.

::

    async with ExportWaiter(client) as waiter:      # owns its tasks for its whole life
        status = await waiter.wait(96)               # from any number of coroutines
        report = await waiter.wait_all([96, 97])
        async for outcome in waiter.as_completed(ids): ...
        handle = waiter.submit(98); outcome = await handle

Callers of the same export id share its polls and get the same outcome; one caller's
cancellation or deadline ends only its own wait; an export nobody waits for any more is
polled no more. Used without ``async with``, the waiter starts its tasks on demand and
they end when no caller is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from math import inf
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from .._checks import check_count, check_number
from ..download import Downloader
from ..errors import (
    ConfigurationError,
    ExportFailedError,
    ExportTimeoutError,
    WaiterClosedError,
)
from ..models import MAX_INT_EXPORT_ID, ExportId, ExportStatus, validate_export_id
from ..ratelimit import AdaptiveRateLimiter, AsyncRateLimiter, CappedRateLimiter, RateLimiter
from .clock import Clock, MonotonicClock
from .core import Caller, Entry, Pending, PendingRun, Scheduler
from .driver import Driver
from .outcomes import (
    ExportOutcome,
    OutcomeKind,
    UpdateHook,
    WaiterEvent,
    WaiterStats,
    WaitReport,
)
from .policy import DEFAULT_MAX_IN_FLIGHT, PollPolicy, batch_window

__all__ = [
    "ExportHandle",
    "ExportWaiter",
    "OutcomeStream",
    "StatusClient",
]

logger = logging.getLogger("qianfan_export_wait")


@runtime_checkable
class StatusClient(Protocol):
    """What the waiter needs from a client: ``await get_status(export_id)``.

    ``ExportStatusClient`` is one. A client may also offer ``fetch_once`` (one request,
    no retry of its own: the waiter schedules retries), ``ensure_connections(n)`` (size
    its pool for ``n`` requests in flight and return what it allows), and
    ``credentials``/``base_url`` (named in the log when authentication fails).
    """

    async def get_status(self, export_id: ExportId) -> ExportStatus:
        """The current status of one export, or an ``ApiError``."""


class _PolicyTimeout:
    def __repr__(self) -> str:
        return "<the policy's timeout>"


POLICY_TIMEOUT: Any = _PolicyTimeout()
"""The default ``timeout`` of ``wait`` and ``submit``: the waiter's ``PollPolicy.timeout``."""


def _leave_quietly(caller: Caller, waiter: ExportWaiter) -> None:
    # RuntimeError: the event loop is gone, so nothing runs any more anyway.
    with contextlib.suppress(RuntimeError):
        waiter._leave(caller)


class ExportHandle(Caller):
    """One caller's wait for one export: ``await handle`` gives its ``ExportOutcome``.

    Cancelling it (``handle.cancel()``, or cancelling a task that awaits it) ends only
    this caller's wait; the export is polled no more once nobody waits for it.
    """

    __slots__ = ("_entry", "_future", "_waiter", "export_id")

    def __init__(
        self, waiter: ExportWaiter, export_id: ExportId, started: float, deadline: float
    ) -> None:
        super().__init__(started, deadline)
        self.export_id = export_id
        self._waiter = waiter
        self._entry: Entry | None = None
        self._future: asyncio.Future[ExportOutcome] = asyncio.get_running_loop().create_future()
        self._future.add_done_callback(self._on_done)

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "waiting"
        return f"<ExportHandle {self.export_id!r} {state}>"

    def __await__(self) -> Any:
        return self._future.__await__()

    def _on_done(self, future: asyncio.Future[ExportOutcome]) -> None:
        if future.cancelled():
            _leave_quietly(self, self._waiter)

    def deliver(self, outcome: ExportOutcome) -> None:
        """Resolve the handle with ``outcome``."""
        self._entry = None  # a handle kept for long keeps no export state alive
        if not self._future.done():
            self._future.set_result(outcome)

    def abort(self, error: BaseException) -> None:
        """Resolve the handle with ``error`` raised."""
        if not self._future.done():
            self._future.set_exception(error)
            self._future.exception()  # retrieved: no warning if nobody awaits it

    def entries(self) -> Iterable[Entry]:
        """The one entry this handle waits on."""
        return () if self._entry is None else (self._entry,)

    def cancel(self) -> bool:
        """Stop waiting; return ``False`` if the outcome was already known."""
        return self._future.cancel()

    def done(self) -> bool:
        """Whether the outcome is known (or the handle was cancelled)."""
        return self._future.done()

    def outcome(self) -> ExportOutcome:
        """The outcome; ``asyncio.InvalidStateError`` if not known yet."""
        return self._future.result()

    def snapshot(self) -> ExportOutcome:
        """The outcome if known, else a ``pending`` one with the last status seen."""
        future = self._future
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        waiter = self._waiter
        entry = self._entry
        now = waiter.clock.now()
        if entry is None:  # pragma: no cover - an entry is set right after creation
            return ExportOutcome(self.export_id, OutcomeKind.PENDING, None, None, 0, 0.0)
        return waiter._core.snapshot(entry, self, now)


class _Batch(Caller):
    """A ``wait_all`` call: every outcome, then one wake-up."""

    __slots__ = ("_entries", "future", "outcomes", "remaining")

    def __init__(self, started: float, deadline: float, count: int) -> None:
        super().__init__(started, deadline)
        self._entries: list[Entry] = []
        self.outcomes: dict[ExportId, ExportOutcome] = {}
        self.remaining = count
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, outcome: ExportOutcome) -> None:
        self.outcomes[outcome.export_id] = outcome
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)

    def abort(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
            self.future.exception()

    def entries(self) -> Iterable[Entry]:
        return self._entries


class OutcomeStream(Caller):
    """The outcomes of some exports, each as soon as it is known:
    ``async for outcome in waiter.as_completed(ids)``.

    Polling starts at the first iteration. Leaving the ``async for`` loop stops polling at
    once, whatever else still references the stream; so does ``aclose()`` or leaving
    ``async with stream:`` (inside which the loop may be left and entered again).
    ``unfinished()`` gives a ``pending`` outcome for every export not yet yielded.
    """

    __slots__ = (
        "_delivered",
        "_entered",
        "_entries",
        "_error",
        "_ids",
        "_joined",
        "_joiner",
        "_left",
        "_ready",
        "_remaining",
        "_runs",
        "_signal",
        "_started_flag",
        "_tasks",
        "_waiter",
    )

    def __init__(self, waiter: ExportWaiter, ids: list[ExportId]) -> None:
        super().__init__(0.0, inf)
        self._waiter = waiter
        self._ids: list[ExportId] | None = ids
        self._entries: list[Entry] = []
        self._ready: deque[ExportOutcome | Pending] = deque()
        # Runs of outcomes that came at once (a deadline), read after the single ones: an
        # answer that comes while a run is read goes first, so a reader that keeps input
        # order need not hold a run's worth of lines behind a poll that was in flight.
        self._runs: deque[PendingRun] = deque()
        self._remaining = len(ids)
        self._delivered = 0
        self._signal: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._started_flag = False
        self._entered = False
        self._left: list[Entry] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Many ids join a chunk at a time, so the first request goes out at once: the
        # ids from _joined on are still to join.
        self._joined = 0
        self._joiner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<OutcomeStream {self._remaining} to come>"

    # -- the caller side ------------------------------------------------------------------

    lazy = True

    def deliver(self, outcome: ExportOutcome) -> None:
        self._took_one(outcome)

    def defer(self, pending: Pending | PendingRun) -> None:
        self._took_one(pending)

    def _took_one(self, item: ExportOutcome | Pending | PendingRun) -> None:
        if isinstance(item, PendingRun):
            self._runs.append(item)
            count = len(item.entries)
        else:
            self._ready.append(item)
            count = 1
        self._remaining -= count
        self._delivered += count
        entries = self._entries
        if self._delivered > 1000 and self._delivered * 2 > len(entries):
            # Let finished exports go: a long stream keeps only those still to come.
            self._entries = [entry for entry in entries if entry.has_caller(self)]
            self._delivered = 0
        self._wake()

    def abort(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def entries(self) -> Iterable[Entry]:
        return self._entries

    def _wake(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # -- the user side ---------------------------------------------------------------------

    _JOIN_CHUNK = 5000

    def _start(self) -> None:
        if self._started_flag:
            return
        self._started_flag = True
        ids = self._ids or []
        if len(ids) <= self._JOIN_CHUNK:
            self._ids = None
            self._waiter._subscribe(self, ids)
            return
        self.waiting += 1  # not done before every id has joined
        self._joined = self._JOIN_CHUNK
        self._waiter._subscribe(self, ids[: self._JOIN_CHUNK])
        self._joiner = asyncio.get_running_loop().create_task(self._join_the_rest())

    async def _join_the_rest(self) -> None:
        waiter = self._waiter
        core = waiter._core
        ids = self._ids
        assert ids is not None
        while self._joined < len(ids):
            await asyncio.sleep(0)  # the loop (and the polls) go on between chunks
            if self.closed:
                return
            chunk = ids[self._joined : self._joined + self._JOIN_CHUNK]
            self._joined += len(chunk)
            self._entries.extend(core.join_many(self, chunk, waiter.clock.now()))
            waiter._driver.kick()
        self._ids = None
        self._joined = 0
        self._joiner = None
        core.joined_all(self, waiter.clock.now())
        waiter._driver.kick()

    def __aiter__(self) -> AsyncIterator[ExportOutcome]:
        if self._entered:
            return self
        return _Cursor(self)

    async def __anext__(self) -> ExportOutcome:
        self._start()
        while not (self._ready or self._runs):
            if self._error is not None:
                raise self._error
            if self._remaining <= 0 or self.closed:
                raise StopAsyncIteration
            self._signal = asyncio.get_running_loop().create_future()
            try:
                await self._signal
            finally:
                self._signal = None
        return self._next_ready()

    def _next_ready(self) -> ExportOutcome:
        core = self._waiter._core
        ready = self._ready
        if ready:
            item = ready.popleft()
            return item if isinstance(item, ExportOutcome) else core.materialize(item, self)
        run = self._runs[0]
        entries = run.entries
        entry = entries.pop()
        if not entries:
            self._runs.popleft()
        return core.timed_out(entry, self, run.at)

    async def __aenter__(self) -> OutcomeStream:
        self._entered = True
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def release(self) -> None:
        """Stop polling for this stream now (``aclose`` also waits for the cancelled
        requests to end)."""
        if self._left is not None or not self._started_flag:
            self._left = self._left if self._left is not None else []
            return
        self._left = [entry for entry in self._entries if entry.has_caller(self)]
        self._tasks = self._waiter._leave(self)
        if self._joiner is not None:
            self._joiner.cancel()
            self._tasks.append(self._joiner)

    async def aclose(self) -> None:
        """Stop polling, and wait until the requests it cancelled have ended."""
        self.release()
        tasks, self._tasks = self._tasks, []
        await self._waiter._driver.settle(tasks)

    def unfinished(self) -> list[ExportOutcome]:
        """``iter_unfinished()`` as a list: each export not yet yielded, with its outcome
        if known, else ``pending`` and the last status seen (as polling stopped, or now)."""
        return list(self.iter_unfinished())

    def iter_unfinished(self) -> Iterator[ExportOutcome]:
        """Every export not yet yielded, one outcome at a time: its outcome if it is
        known but not yet read, else a ``pending`` one with the last status seen (each
        unpacked only when its turn comes, so 100,000 never sit in memory at once)."""
        waiter = self._waiter
        now = waiter.clock.now()
        if not self._started_flag and self._ids:
            yield from (
                ExportOutcome(export_id, OutcomeKind.PENDING, None, None, 0, 0.0)
                for export_id in self._ids
            )
            return
        core = waiter._core
        while self._ready or self._runs:
            yield self._next_ready()
        if self._left is not None:
            entries: Iterable[Entry] = self._left
        else:
            entries = [entry for entry in self._entries if entry.has_caller(self)]
        for entry in entries:
            yield core.snapshot(entry, self, now)
        if self._ids is not None:  # ids not joined yet: never polled
            for export_id in self._ids[self._joined :]:
                yield ExportOutcome(
                    export_id, OutcomeKind.PENDING, None, None, 0, now - self.started
                )

    def __del__(self) -> None:
        if self._started_flag and self._left is None:
            with contextlib.suppress(Exception):  # the loop may be gone at shutdown
                self.release()


class _Cursor:
    """What ``async for`` iterates: when the loop is left, it is dropped, and polling stops."""

    __slots__ = ("_stream",)

    def __init__(self, stream: OutcomeStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> ExportOutcome:
        return await self._stream.__anext__()

    def __del__(self) -> None:
        stream = self._stream
        if stream._started_flag and stream._left is None and not stream._entered:
            with contextlib.suppress(Exception):  # the loop may be gone at shutdown
                stream.release()


class ExportWaiter:
    """Waits for many exports at once through one client, within one shared rate limit.

    Use it as ``async with`` for the life of a service, with any number of coroutines
    awaiting ``wait``, ``wait_all``, ``as_completed`` or ``submit`` through it; or
    without, as a one-off. ``qps=None`` adapts to the server's limit; a number caps the
    rate at that many requests in any one second, and the rate backs off below it while
    the server throttles (``CappedRateLimiter``; or pass a ``limiter``).
    ``max_in_flight`` bounds requests in flight across every caller. ``on_update`` is
    called with a ``StateChange`` for every state change and an ``ExportOutcome`` for
    every final outcome.

    With a ``downloader`` (a ``Downloader``, used as ``async with`` by its owner), each
    export's file is fetched as it reaches ``Done``, at most the downloader's
    ``max_concurrency`` at once and outside the status API's rate limit, and its outcome
    (still ``done``) carries ``file`` or ``download_error``.

    An authentication failure costs one request: every caller gets the ``AuthError``
    and later calls raise it. An exception that is not an API error ends the exports it
    touched as ``error`` carrying ``UnexpectedError``; nothing hangs.
    """

    def __init__(
        self,
        client: StatusClient,
        *,
        policy: PollPolicy | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        qps: float | None = None,
        on_update: UpdateHook | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | AsyncRateLimiter | None = None,
        downloader: Downloader | None = None,
    ) -> None:
        check_count("max_in_flight", max_in_flight)
        check_number("qps", qps, unit="requests per second", allow_none=True)
        if policy is not None and not isinstance(policy, PollPolicy):
            raise ConfigurationError(f"policy must be a PollPolicy, got {policy!r}")
        fetch = getattr(client, "fetch_once", None) or getattr(client, "get_status", None)
        if not callable(fetch):
            raise ConfigurationError(
                f"client must have an async get_status(export_id), got {type(client).__name__}"
            )
        self.client = client
        self.policy = policy or PollPolicy()
        self.max_in_flight = max_in_flight
        self.clock: Clock = clock or MonotonicClock()
        self.limiter: RateLimiter | AsyncRateLimiter = limiter or (
            AdaptiveRateLimiter() if qps is None else CappedRateLimiter(qps)
        )
        self.on_update = on_update
        allowed = self._connections_for(max_in_flight)
        granularity = float(getattr(self.clock, "granularity", 0.0))
        self._core = Scheduler(
            self.policy,
            resolution=batch_window(self.policy, granularity),
            notify=self._notify,
        )
        self._driver = Driver(
            self._core,
            fetch=fetch,
            limiter=self.limiter,
            clock=self.clock,
            max_in_flight=allowed,
            describe_client=self._describe_client,
            downloader=downloader,
        )
        self.downloader = downloader
        self._closed = False

    def __repr__(self) -> str:
        stats = self.stats
        return (
            f"<ExportWaiter pending={stats.pending} callers={stats.callers} "
            f"in_flight={stats.in_flight}{' closed' if self._closed else ''}>"
        )

    def _connections_for(self, max_in_flight: int) -> int:
        """Size the client's pool for ``max_in_flight``; return the requests it allows."""
        ensure = getattr(self.client, "ensure_connections", None)
        if ensure is None:
            return max_in_flight
        allowed = int(ensure(max_in_flight))
        if allowed < max_in_flight:
            logger.warning(
                "max_in_flight=%d, but the client's connection pool allows %d; "
                "at most %d requests will be in flight",
                max_in_flight,
                allowed,
                allowed,
            )
        return min(allowed, max_in_flight)

    def _describe_client(self) -> str:
        credentials = getattr(self.client, "credentials", None)
        masked = getattr(credentials, "masked_access_key", None)
        base_url = getattr(self.client, "base_url", None)
        return f"access key {masked or '?'} at {base_url or '?'}"

    # -- life --------------------------------------------------------------------------

    async def __aenter__(self) -> ExportWaiter:
        self._check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling, cancel requests in flight, and end every wait still going with
        ``WaiterClosedError``. Later calls raise it."""
        if self._closed:
            return
        self._closed = True
        await self._driver.aclose(WaiterClosedError("the waiter was closed"))

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` was called."""
        return self._closed

    @property
    def stats(self) -> WaiterStats:
        """Counts over the waiter's life, and what is pending and in flight now."""
        core = self._core
        counts = core.counts
        return WaiterStats(
            total=core.total,
            pending=len(core.entries),
            done=counts[OutcomeKind.DONE],
            failed=counts[OutcomeKind.FAILED],
            errors=counts[OutcomeKind.ERROR],
            timed_out=counts[OutcomeKind.TIMEOUT],
            in_flight=len(self._driver.polls),
            requests=core.requests,
            throttled=core.throttled,
            retries=core.retries,
            rate=self.limiter.rate,
            cancelled=counts[OutcomeKind.PENDING],
            callers=core.callers,
            request_rate=self._driver.request_rate(),
            max_in_flight=self._driver.max_in_flight,
            unavailable_for=core.unavailable_for(self.clock.now()),
            downloading=len(self._driver.downloads),
        )

    # -- entry points ------------------------------------------------------------------

    def submit(
        self, export_id: ExportId, *, timeout: float | None = POLICY_TIMEOUT
    ) -> ExportHandle:
        """Start waiting for one export; ``await`` the handle for its ``ExportOutcome``.

        ``timeout``: seconds for this caller (default: the policy's; ``None``: none).
        """
        export_id = _checked_id(export_id)
        self._check_usable()
        now = self.clock.now()
        handle = ExportHandle(self, export_id, now, self._deadline(now, timeout))
        handle._entry = self._core.join(handle, export_id, now)
        self._core.watch(handle)
        self._driver.kick()
        return handle

    async def wait(
        self, export_id: ExportId, *, timeout: float | None = POLICY_TIMEOUT
    ) -> ExportStatus:
        """Wait for one export; return its ``Done`` status or raise.

        Raises ``ExportFailedError`` on ``Fail``, ``ExportTimeoutError`` at the deadline
        (``timeout``: seconds for this call, default the policy's, ``None`` for none),
        and the ``QianfanError`` that ended it otherwise.
        """
        outcome = await self.submit(export_id, timeout=timeout)
        return _status_or_raise(outcome)

    async def wait_all(self, ids: Iterable[ExportId]) -> WaitReport:
        """Wait until every export has an outcome; return them in the caller's order."""
        unique = _unique_ids(ids)
        self._check_usable()
        now = self.clock.now()
        batch = _Batch(now, self._deadline(now, POLICY_TIMEOUT), len(unique))
        if not unique:
            return WaitReport((), elapsed=0.0)
        self._subscribe(batch, unique)
        try:
            await batch.future
        except asyncio.CancelledError:
            await self._driver.settle(self._leave(batch))
            raise
        outcomes = batch.outcomes
        return WaitReport(
            (outcomes[export_id] for export_id in unique), elapsed=self.clock.now() - now
        )

    def as_completed(self, ids: Iterable[ExportId]) -> OutcomeStream:
        """The outcomes of ``ids`` as each is known: ``async for outcome in ...``.

        Leaving the loop stops polling for them at once.
        """
        unique = _unique_ids(ids)
        self._check_usable()
        return OutcomeStream(self, unique)

    # -- plumbing for the callers ------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise WaiterClosedError("the waiter is closed")
        error = self._core.auth_error
        if error is not None:
            raise error.with_traceback(None)

    def _deadline(self, now: float, timeout: float | None) -> float:
        if timeout is POLICY_TIMEOUT:
            timeout = self.policy.timeout
        else:
            timeout = check_number("timeout", timeout, allow_none=True)
        return inf if timeout is None else now + timeout

    def _subscribe(self, caller: _Batch | OutcomeStream, ids: list[ExportId]) -> None:
        self._check_usable()
        now = self.clock.now()
        caller.started = now
        if isinstance(caller, OutcomeStream):
            caller.deadline = self._deadline(now, POLICY_TIMEOUT)
        caller._entries.extend(self._core.join_many(caller, ids, now))
        self._core.watch(caller)
        self._driver.kick()

    def _leave(self, caller: Caller) -> list[asyncio.Task[None]]:
        """``caller`` stops waiting: cancel the polls nobody wants now; return them."""
        tasks = self._driver.cancel_polls(self._core.leave(caller))
        self._driver.kick()
        return tasks

    def _notify(self, event: WaiterEvent) -> None:
        hook = self.on_update
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            logger.exception("on_update hook raised; continuing")


def _checked_id(export_id: object) -> ExportId:
    try:
        return validate_export_id(export_id)
    except ValueError as exc:
        raise ConfigurationError(f"invalid export id, nothing was sent: {exc}") from None


def _unique_ids(ids: Iterable[object]) -> list[ExportId]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ConfigurationError(f"ids must be an iterable of export ids, got {type(ids).__name__}")
    # An int never equals a str, so 96 and "96" stay apart as plain keys.
    unique: dict[ExportId, None] = {}
    problems: list[str] = []
    for position, value in enumerate(ids):
        if type(value) is int and 0 < value <= MAX_INT_EXPORT_ID:  # the usual id, checked fast
            unique[value] = None
            continue
        try:
            unique[validate_export_id(value)] = None
        except ValueError as exc:
            problems.append(f"#{position}: {exc}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigurationError(f"invalid export ids, nothing was sent: {shown}{more}")
    return list(unique)


def _status_or_raise(outcome: ExportOutcome) -> ExportStatus:
    """The ``Done`` status of ``outcome``, or the error that says why there is none."""
    export_id = outcome.export_id
    if outcome.kind is OutcomeKind.DONE:
        assert outcome.status is not None
        return outcome.status
    if outcome.kind is OutcomeKind.FAILED:
        raise ExportFailedError(
            f"export {export_id!r} failed (state Fail)", export_id=export_id, status=outcome.status
        )
    if outcome.kind is OutcomeKind.TIMEOUT:
        raise ExportTimeoutError(
            f"export {export_id!r} not finished after {outcome.elapsed:.1f} s "
            f"({outcome.polls} polls, last state "
            f"{outcome.status.state_name if outcome.status else 'unknown'})",
            export_id=export_id,
            status=outcome.status,
        )
    assert outcome.error is not None
    raise outcome.error.with_traceback(None)
