"""``RedisRateLimiter``: the fleet's shared rate limit as one replica sees it (see the
``fleet`` package's docstring)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ClientClosedError, ConfigurationError
from ..ratelimit import AdaptiveRateLimiter, FixedRateLimiter, RateLimiter, Reservation
from .model import (
    FLEET_SCRIPT,
    AdaptiveParams,
    Hint,
    booked_share,
    fallback_rate,
    fixed_interval_us,
    fleet_key,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
from .urls import FleetAuthError, FleetStartError, FleetUnreachableError, _scrub

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("qianfan_export_wait")
_T = TypeVar("_T")


def _raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was cancelled during a Redis call that ended
    without one. redis-py can lose a cancellation that lands while it closes a connection
    on a timeout of its own: the call then ends in a timeout error or a reply, and a
    background loop cancelled by ``aclose`` would run on forever. Python 3.11+ can tell."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError


async def _bounded(awaitable: Awaitable[_T], timeout: float) -> _T:
    async with asyncio.timeout(timeout):
        return await awaitable


class RedisRateLimiter:
    """A rate limiter shared through Redis by every replica that uses the same ``key``.

    ``qps=Q``: the fleet books slots ``1/Q`` apart, never more than ``Q`` in any second.
    ``qps=None``: the fleet shares one adaptive rate (``params``). ``key`` defaults to a
    hash of ``access_key`` (:func:`fleet_key`). ``timeout`` bounds every Redis call;
    ``heartbeat_interval`` and ``replica_ttl`` decide how soon a vanished replica stops
    counting in the fallback share. Use it as ``async with``, or call :meth:`aclose`;
    ``ExportWaiter`` never closes it. ``fallbacks`` counts the outages met so far.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        access_key: str | None = None,
        key: str | None = None,
        qps: float | None = None,
        params: AdaptiveParams | None = None,
        timeout: float = 0.25,
        heartbeat_interval: float = 1.0,
        replica_ttl: float = 5.0,
        state_ttl: float = 3600.0,
        early_tolerance: float = 0.005,
        owns_client: bool = False,
        name: str = "redis",
        secrets_to_hide: Sequence[str] = (),
    ) -> None:
        from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

        if qps is not None and (
            isinstance(qps, bool) or not isinstance(qps, (int, float)) or not 0 < qps < math.inf
        ):
            raise ConfigurationError(f"qps must be a finite number > 0, got {qps!r}")
        for label, value in (
            ("timeout", timeout),
            ("heartbeat_interval", heartbeat_interval),
            ("replica_ttl", replica_ttl),
            ("state_ttl", state_ttl),
        ):
            if not 0 < value < math.inf:
                raise ConfigurationError(f"{label} must be a finite number > 0, got {value!r}")
        if key is None:
            if not access_key:
                raise ConfigurationError("a fleet limiter needs access_key or key")
            key = fleet_key(access_key)
        self.key = key
        self.qps = None if qps is None else float(qps)
        self.params = params or AdaptiveParams()
        self.fallbacks = 0
        self._redis = redis
        self._script = redis.register_script(FLEET_SCRIPT)
        self._keys = [f"{key}:limiter", f"{key}:replicas"]
        self._errors: tuple[type[BaseException], ...] = (
            RedisError,
            OSError,
            asyncio.TimeoutError,
        )
        self._refused: tuple[type[BaseException], ...] = (AuthenticationError, NoPermissionError)
        self._timeout = timeout
        self._heartbeat_interval = heartbeat_interval
        self._replica_ttl = replica_ttl
        self._replica_ttl_us = str(round(replica_ttl * 1e6))
        self._state_ttl_ms = str(round(state_ttl * 1000))
        self._early_tolerance = early_tolerance
        self._owns_client = owns_client
        self._name = name
        self._secrets = tuple(secrets_to_hide)
        self._member = secrets.token_hex(8)
        self._hint = Hint(rate=self.qps)
        self._live = 1
        self._own_tickets: collections.deque[int] = collections.deque(maxlen=20)
        self._live_at = -math.inf
        self._successes = 0
        self._throttles: list[tuple[int, float]] = []
        self._report_wanted = asyncio.Event()
        self._fallback: RateLimiter | None = None
        self._returning: RateLimiter | None = None
        self._returning_until = -math.inf
        self._last_slot: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._joined = False
        self._closed = False

    def __repr__(self) -> str:
        mode = "fixed" if self.qps is not None else "adaptive"
        where = "local fallback" if self._fallback is not None else "shared"
        return (
            f"RedisRateLimiter({self._name!r}, key={self.key!r}, {mode}, "
            f"rate={self.rate:.4g}/s, {where})"
        )

    # ------------------------------------------------------------------ the limiter protocol

    @property
    def rate(self) -> float:
        """The fleet's rate (``qps``, or the shared adaptive rate last seen); this replica's
        local rate while Redis is unreachable."""
        if self._fallback is not None:
            return self._fallback.rate
        if self.qps is not None:
            return self.qps
        return self._hint.rate if self._hint.rate is not None else self.params.initial_rate

    @property
    def live_replicas(self) -> int:
        """Replicas whose heartbeat Redis saw lately (this one included): the highest
        count read within the last ``replica_ttl``."""
        return self._live

    @property
    def shared(self) -> bool:
        """Whether reservations go to Redis (``False`` during a fallback)."""
        return self._fallback is None

    async def areserve(self, now: float) -> Reservation:
        """Book the fleet's next slot: one script call on Redis, or the local fallback.
        The first one joins the fleet if ``async with`` has not (see :meth:`__aenter__`);
        after :meth:`aclose` it raises ``ClientClosedError``."""
        if self._closed:
            raise ClientClosedError(f"this RedisRateLimiter ({self._name}) is closed")
        if not self._joined:
            await self._join()
        self._start()
        fallback = self._fallback
        if fallback is None:
            try:
                reservation = await self._reserve_shared()
            except self._errors as exc:
                fallback = self._enter_fallback(exc)
            else:
                returning = self._returning
                if returning is not None and time.monotonic() < self._returning_until:
                    # Replicas come back from a fallback one heartbeat apart: until they all
                    # have, keep to the local share as well as to the fleet's schedule.
                    local = returning.reserve(now).delay
                    reservation = Reservation(max(reservation.delay, local), reservation.ticket)
                else:
                    self._returning = None
                self._last_slot = now + reservation.delay
                return reservation
        reservation = fallback.reserve(now)
        # Negative tickets are the fallback's, so a late answer finds its own limiter.
        return Reservation(reservation.delay, -reservation.ticket)

    def on_success(self, now: float, ticket: int) -> None:
        """Count it; the count rides along with this replica's next reservation."""
        if ticket < 0:
            if self._fallback is not None:
                self._fallback.on_success(now, -ticket)
        else:
            self._successes += 1

    def on_throttle(self, now: float, ticket: int, retry_after: float | None = None) -> None:
        """Report it to the fleet in the background (locally during a fallback)."""
        fallback = self._fallback
        if fallback is not None:
            # A shared ticket means nothing to the local limiter: honour Retry-After only.
            fallback.on_throttle(now, -ticket if ticket < 0 else 0, retry_after)
            return
        if ticket < 0:
            return
        self._throttles.append((ticket, retry_after or 0.0))
        self._report_wanted.set()
        self._start()

    # ------------------------------------------------------------------ Redis calls

    async def _call(self, args: list[str]) -> list[Any]:
        try:
            reply: list[Any] = await _bounded(
                self._script(keys=self._keys, args=args), self._timeout
            )
        except self._errors:
            _raise_if_cancelled()
            raise
        _raise_if_cancelled()
        return reply

    async def _reserve_shared(self) -> Reservation:
        hint = self._hint
        if self.qps is not None:
            interval_us = fixed_interval_us(self.qps)
            reply = await self._call(
                ["fixed", "", self._state_ttl_ms, repr(interval_us), str(hint.seq)]
            )
            seq = int(reply[1])
            self._hint = Hint(rate=self.qps, seq=seq)
            self._saw_replicas(reply[2])
            self._booked(seq)
            self._rebuilt(float(reply[3]) / 1e6)
            return Reservation(float(reply[0]) / 1e6, seq)
        successes, self._successes = self._successes, 0
        try:
            reply = await self._call(
                [
                    "adaptive",
                    "",
                    self._state_ttl_ms,
                    *hint.args(),
                    *self.params.grow_args(),
                    str(successes),
                ]
            )
        except BaseException:
            self._successes += successes
            raise
        seq = int(reply[1])
        self._hint = Hint(float(reply[2]), float(reply[3]) if reply[3] else None, seq)
        self._saw_replicas(reply[4])
        self._booked(seq)
        self._rebuilt(float(reply[5]) / 1e6)
        delay = float(reply[0]) / 1e6
        return Reservation(0.0 if delay < self._early_tolerance else delay, seq)

    async def _report_throttles(self) -> None:
        throttles, self._throttles = self._throttles, []
        if not throttles or self._fallback is not None:
            return
        p = self.params
        hint = self._hint
        reply = await self._call(
            [
                "throttle",
                "",
                self._state_ttl_ms,
                *hint.args(),
                repr(p.initial_rate),
                repr(p.min_rate),
                repr(p.decrease_factor),
                "fixed" if self.qps is not None else "adaptive",
                str(len(throttles)),
                str(max(ticket for ticket, _ in throttles)),
                str(round(max(after for _, after in throttles) * 1e6)),
            ]
        )
        if self.qps is None:
            self._hint = Hint(float(reply[2]), float(reply[3]) if reply[3] else None, hint.seq)

    async def _join(self) -> None:
        """The first heartbeat, which must get through: at start, a Redis that cannot be
        reached or refuses the credentials is a mistake to report, not an outage."""
        try:
            await self._heartbeat_call()
        except self._refused as exc:
            raise FleetAuthError(
                f"fleet rate limit: Redis at {self._name} refused the credentials "
                f"({self._describe(exc)}); check the URL's user and password"
            ) from None
        except self._errors as exc:
            raise FleetUnreachableError(
                f"fleet rate limit: Redis at {self._name} cannot be reached "
                f"({self._describe(exc)}); check the URL's host and port"
            ) from None
        self._joined = True

    async def _heartbeat(self) -> None:
        try:
            await self._heartbeat_call()
        except self._errors as exc:
            self._enter_fallback(exc)

    async def _heartbeat_call(self) -> None:
        reply = await self._call(
            ["heartbeat", "", self._state_ttl_ms, self._member, self._replica_ttl_us]
        )
        self._saw_replicas(reply[0])
        if self.qps is None and reply[1]:
            hint = self._hint
            self._hint = Hint(float(reply[1]), hint.ceiling, hint.seq)
        if self._fallback is not None:
            self._returning, self._fallback = self._fallback, None
            self._returning_until = time.monotonic() + 2 * self._heartbeat_interval
            logger.info("fleet rate limit: Redis at %s answers again; shared limit", self._name)

    def _saw_replicas(self, count: int | bytes) -> None:
        # The highest count of the last replica_ttl: a replica that just joined, or beat
        # first after a restart emptied the set, has not seen the others yet.
        live, now = max(1, int(count)), time.monotonic()
        if live >= self._live or now - self._live_at > self._replica_ttl:
            self._live, self._live_at = live, now

    def _booked(self, ticket: int) -> None:
        own = self._own_tickets
        if own and ticket <= own[-1]:  # the state was rebuilt: the sequence started over
            own.clear()
        own.append(ticket)

    # ------------------------------------------------------------------ fallback

    def _local_share(self) -> tuple[float, RateLimiter]:
        """This replica's share of the last shared rate, and a local limiter at it."""
        shared = self.qps if self.qps is not None else self.rate
        share = fallback_rate(shared, self._live, booked_share(self._own_tickets))
        if self.qps is not None:
            return share, FixedRateLimiter(share)
        return share, AdaptiveRateLimiter(
            initial_rate=share, min_rate=min(self.params.min_rate, share), max_rate=share
        )

    def _rebuilt(self, seconds_ago: float) -> None:
        # Redis lost the state lately (a restart, FLUSHALL): other replicas may still send
        # their local share until their next heartbeat, so every replica keeps to its own
        # share until two heartbeats after the rebuild.
        caution = 2 * self._heartbeat_interval - seconds_ago
        if caution <= 0:
            return
        if self._returning is None:
            self._returning = self._local_share()[1]
            if self._last_slot is not None:
                self._returning.reserve(self._last_slot)
        self._returning_until = max(self._returning_until, time.monotonic() + caution)

    def _enter_fallback(self, exc: BaseException) -> RateLimiter:
        if self._fallback is not None:
            return self._fallback
        shared = self.qps if self.qps is not None else self.rate
        share, self._fallback = self._local_share()
        if self._last_slot is not None:
            # The slot last booked on Redis is this replica's: the local schedule starts there.
            self._fallback.reserve(self._last_slot)
        self.fallbacks += 1
        logger.warning(
            "fleet rate limit: Redis at %s did not answer (%s); this replica sends at most "
            "%.4g/s (%.4g/s shared by %d live replicas) until it answers again",
            self._name,
            self._describe(exc),
            share,
            shared,
            self._live,
        )
        return self._fallback

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _scrub(text, self._secrets)

    # ------------------------------------------------------------------ lifetime

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        self._tasks = [
            asyncio.ensure_future(self._heartbeat_loop()),
            asyncio.ensure_future(self._report_loop()),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def _heartbeat_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._heartbeat_interval)
            await self._heartbeat()

    async def _report_loop(self) -> None:
        while not self._closed:
            await self._report_wanted.wait()
            self._report_wanted.clear()
            try:
                await self._report_throttles()
            except self._errors as exc:
                self._enter_fallback(exc)

    async def __aenter__(self) -> RedisRateLimiter:
        """Join the fleet (one heartbeat, bounded by ``timeout``) and start the tasks.

        Raises ``FleetUnreachableError`` when Redis does not answer and
        ``FleetAuthError`` when it refuses the credentials (the client it made is closed
        first); ``ClientClosedError`` after :meth:`aclose`."""
        if self._closed:
            raise ClientClosedError(f"this RedisRateLimiter ({self._name}) is closed")
        try:
            await self._join()
        except FleetStartError:
            await self.aclose()
            raise
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background tasks, leave the live set, close a client it made."""
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, []
        # Bounded: a cancellation lost inside redis-py (see _raise_if_cancelled) on Python
        # 3.10 must not hang the close; the loops also stop at their next turn.
        for _ in range(3):
            for task in tasks:
                task.cancel()
            self._report_wanted.set()
            if not tasks:
                break
            _, pending = await asyncio.wait(tasks, timeout=self._timeout + 1.0)
            tasks = list(pending)
        for task in tasks:  # pragma: no cover (only a lost cancellation gets here)
            logger.warning("fleet rate limit: a background task did not stop: %r", task)
        try:
            with contextlib.suppress(*self._errors):
                await self._call(["leave", "", self._state_ttl_ms, self._member])
        finally:
            if self._owns_client:
                await self._redis.aclose()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("fleet rate limit: a background task failed", exc_info=task.exception())
