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
import logging
import warnings
from collections.abc import Iterable
from types import TracebackType

from .._checks import check_count, check_number
from ..errors import (
    ConfigurationError,
    ExportFailedError,
    ExportTimeoutError,
    WaiterClosedError,
)
from ..integrations import default_observers
from ..models import MAX_INT_EXPORT_ID, ExportId, ExportStatus, validate_export_id
from ..observe import (
    Guard,
    Instruments,
    Observer,
    PollHook,
    observed_fetch,
    observed_stream,
)
from ..ratelimit import AdaptiveRateLimiter, AsyncRateLimiter, CappedRateLimiter, RateLimiter
from .clients import ClientSeam, SingleRequestClient, StatusClient
from .clock import Clock, MonotonicClock
from .core import Scheduler
from .downloading import FileFetcher
from .driver import Driver
from .handles import ExportHandle, OutcomeStream, _Batch
from .membership import Membership
from .outcomes import (
    ExportOutcome,
    OutcomeKind,
    StateChange,
    UpdateHook,
    WaiterEvent,
    WaiterStats,
    WaitReport,
)
from .policy import (
    DEFAULT_MAX_IN_FLIGHT,
    POLICY_TIMEOUT,
    PollPolicy,
    UsePolicyTimeout,
    batch_window,
)

__all__ = [
    "ExportHandle",
    "ExportWaiter",
    "OutcomeStream",
    "StatusClient",
]

logger = logging.getLogger("qianfan_export_wait")


class ExportWaiter:
    """Waits for many exports at once through one client, within one shared rate limit.

    Use it as ``async with`` for the life of a service, with any number of coroutines
    awaiting ``wait``, ``wait_all``, ``as_completed`` or ``submit`` through it; or
    without, as a one-off. ``qps=None`` adapts to the server's limit; a number caps the
    rate at that many requests in any one second, and the rate backs off below it while
    the server throttles (``CappedRateLimiter``; or pass a ``limiter``).
    ``max_in_flight`` bounds requests in flight across every caller. ``on_update`` is
    called with a ``StateChange`` for every state change and an ``ExportOutcome`` for
    every final outcome; ``on_poll`` with a ``PollEvent`` for every status request's
    answer. Either may be an ``async def``: its coroutine runs in a task of its own, off
    the polling path, and an exception in a hook is logged, never raised into a wait.
    ``observers`` (``qianfan_export_wait.observe``) get metrics and traces; by default
    Prometheus metrics and OpenTelemetry spans when those packages are installed
    (``NO_OBSERVERS``: none). See docs/operations.md.

    With a ``downloader`` (a ``Downloader``, used as ``async with`` by its owner), each
    export's file is fetched as it reaches ``Done``, at most the downloader's
    ``max_concurrency`` at once and outside the status API's rate limit, and its outcome
    (still ``done``) carries ``file`` or ``download_error``. Deprecated (it warns):
    ``qianfan_export_wait.downloads.download_each`` fetches files beside the waiter.

    ``api`` (``"v1"`` or ``"v2"``) polls that generation's export-status call through the
    client's ``status_fetch(api)``; by default, the client's own (``client.api``).

    An authentication failure costs one request: every caller gets the ``AuthError``
    and later calls raise it for ``PollPolicy.auth_cooldown`` seconds; after that one
    request tries again, so a fixed key needs no new waiter. An exception that is not an
    API error ends the exports it touched as ``error`` carrying ``UnexpectedError``;
    nothing hangs.
    """

    def __init__(
        self,
        client: StatusClient | SingleRequestClient,
        *,
        policy: PollPolicy | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        qps: float | None = None,
        on_update: UpdateHook | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | AsyncRateLimiter | None = None,
        downloader: FileFetcher | None = None,
        api: str | None = None,
        on_poll: PollHook | None = None,
        observers: Iterable[Observer] | None = None,
    ) -> None:
        check_count("max_in_flight", max_in_flight)
        check_number("qps", qps, unit="requests per second", allow_none=True)
        if policy is not None and not isinstance(policy, PollPolicy):
            raise ConfigurationError(f"policy must be a PollPolicy, got {policy!r}")
        if downloader is not None:
            warnings.warn(
                "ExportWaiter(downloader=...) is deprecated and goes in a later release: "
                "fetch files beside the waiter with "
                "qianfan_export_wait.downloads.download_each(waiter.as_completed(ids), "
                "downloader), giving the Downloader refresh=waiter.refresh",
                DeprecationWarning,
                stacklevel=2,
            )
        seam = ClientSeam(client, api=api)
        self.client = client
        self.policy = policy or PollPolicy()
        self.max_in_flight = max_in_flight
        self.clock: Clock = clock or MonotonicClock()
        self._limiter: RateLimiter | AsyncRateLimiter = limiter or (
            AdaptiveRateLimiter() if qps is None else CappedRateLimiter(qps)
        )
        self.on_update = on_update
        self._guard = Guard()
        self._instruments = Instruments(
            default_observers() if observers is None else observers, on_poll, self._guard
        )
        fetch = observed_fetch(seam.fetch, self._instruments.poll, self.clock)
        allowed = seam.connections(max_in_flight)
        granularity = float(getattr(self.clock, "granularity", 0.0))
        self._core = Scheduler(
            self.policy,
            resolution=batch_window(self.policy, granularity),
            notify=self._notify,
            downloads=downloader is not None,
        )
        self._driver = Driver(
            self._core,
            fetch=fetch,
            limiter=self._limiter,
            clock=self.clock,
            max_in_flight=allowed,
            describe_client=seam.describe,
            downloader=downloader,
        )
        self._members = Membership(self._core, self._driver, self.clock, self.policy)
        self.downloader = downloader
        self._closed = False
        self._instruments.bind(self)

    def __repr__(self) -> str:
        stats = self.stats
        return (
            f"<ExportWaiter pending={stats.pending} callers={stats.callers} "
            f"in_flight={stats.in_flight}{' closed' if self._closed else ''}>"
        )

    @property
    def limiter(self) -> RateLimiter | AsyncRateLimiter:
        """The rate limiter every poll books a slot with; may be replaced while running."""
        return self._limiter

    @limiter.setter
    def limiter(self, limiter: RateLimiter | AsyncRateLimiter) -> None:
        self._driver.use_limiter(limiter)
        self._limiter = limiter

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
        self._members.open = False
        await self._driver.aclose(WaiterClosedError("the waiter was closed"))
        await self._guard.aclose()

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
            rate=self._limiter.rate,
            cancelled=counts[OutcomeKind.PENDING],
            callers=core.callers,
            request_rate=self._driver.request_rate(),
            max_in_flight=self._driver.max_in_flight,
            unavailable_for=core.unavailable_for(self.clock.now()),
            downloading=len(self._driver.downloads),
        )

    # -- entry points ------------------------------------------------------------------

    def submit(
        self, export_id: ExportId, *, timeout: float | UsePolicyTimeout | None = POLICY_TIMEOUT
    ) -> ExportHandle:
        """Start waiting for one export; ``await`` the handle for its ``ExportOutcome``.

        ``timeout``: seconds for this caller (default: the policy's; ``None``: none).
        """
        export_id = _checked_id(export_id)
        self._check_usable()
        now = self.clock.now()
        members = self._members
        handle = ExportHandle(members, export_id, now, members.deadline(now, timeout))
        handle._entry = members.join(handle, export_id, now)
        scopes = self._instruments.wait("wait", (export_id,))
        if scopes is not None:
            scopes.follow(handle._future)
        return handle

    async def wait(
        self, export_id: ExportId, *, timeout: float | UsePolicyTimeout | None = POLICY_TIMEOUT
    ) -> ExportStatus:
        """Wait for one export; return its ``Done`` status or raise.

        Raises ``ExportFailedError`` on ``Fail``, ``ExportTimeoutError`` at the deadline
        (``timeout``: seconds for this call, default the policy's, ``None`` for none),
        and the ``QianfanError`` that ended it otherwise.
        """
        outcome = await self.submit(export_id, timeout=timeout)
        return _status_or_raise(outcome)

    async def wait_all(
        self, ids: Iterable[ExportId], *, timeout: float | UsePolicyTimeout | None = POLICY_TIMEOUT
    ) -> WaitReport:
        """Wait until every export has an outcome; return them in the caller's order.

        ``timeout``: seconds for this call (default: the policy's; ``None``: none); an
        export still unfinished then has a ``timeout`` outcome in the report.
        """
        unique = _unique_ids(ids)
        self._check_usable()
        now = self.clock.now()
        members = self._members
        batch = _Batch(now, members.deadline(now, timeout), len(unique))
        if not unique:
            return WaitReport((), elapsed=0.0)
        scopes = self._instruments.wait("wait_all", unique)
        batch._entries.extend(members.join_many(batch, unique, first=True))
        try:
            await batch.future
        except BaseException as error:
            if scopes is not None:
                scopes.end(error)
            if isinstance(error, asyncio.CancelledError):
                await members.settle(members.leave(batch))
            raise
        outcomes = batch.outcomes
        if scopes is not None:
            for outcome in outcomes.values():
                scopes.outcome(outcome)
            scopes.end()
        return WaitReport(
            (outcomes[export_id] for export_id in unique), elapsed=self.clock.now() - now
        )

    def as_completed(
        self, ids: Iterable[ExportId], *, timeout: float | UsePolicyTimeout | None = POLICY_TIMEOUT
    ) -> OutcomeStream:
        """The outcomes of ``ids`` as each is known: ``async for outcome in ...``.

        ``timeout``: seconds from the first iteration (default: the policy's; ``None``:
        none); the exports unfinished then come as ``timeout`` outcomes. Leaving the loop
        stops polling for them at once.
        """
        unique = _unique_ids(ids)
        self._check_usable()
        if not isinstance(timeout, UsePolicyTimeout):
            check_number("timeout", timeout, allow_none=True)
        scopes = self._instruments.wait("as_completed", unique)
        if scopes is None:
            return OutcomeStream(self._members, unique, timeout)
        stream: OutcomeStream = observed_stream(OutcomeStream)(self._members, unique, timeout)
        stream._scope = scopes  # type: ignore[attr-defined]
        return stream

    async def refresh(self, export_id: ExportId) -> ExportStatus:
        """The status of one export asked now, outside the schedule but inside the
        waiter's rate limit (and fleet limit): e.g. ``Downloader(refresh=waiter.refresh)``
        for a fresh download link. The request's error is raised."""
        self._check_usable()
        return await self._driver.fetch_now(validate_export_id(export_id))

    # -- plumbing for the callers ------------------------------------------------------

    def _check_usable(self) -> None:
        self._members.check_usable()

    def _notify(self, event: WaiterEvent) -> None:
        instruments = self._instruments
        if instruments.events:
            if isinstance(event, StateChange):
                instruments.state_changed(event)
            else:
                instruments.finished(event)
        hook = self.on_update
        if hook is not None:
            self._guard.call("on_update hook", hook, event)


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
