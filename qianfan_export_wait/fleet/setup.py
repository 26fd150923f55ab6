"""Joining a fleet from a URL: ``limiter_from_url`` and ``fleet_limiter``."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigurationError
from .limiter import RedisRateLimiter
from .urls import _SCHEMES, INSTALL_HINT, _scrub, _url_secrets, mask_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisConnection", "fleet_limiter", "limiter_from_url", "redis_from_url"]


class RedisConnection(NamedTuple):
    """A Redis client made from a URL, the URL as it may be shown (credentials masked)
    and the URL's credentials, to scrub from any message."""

    client: Redis
    shown: str
    secrets: tuple[str, ...]


def redis_from_url(
    url: str, *, timeout: float, read_timeout: float | None = None
) -> RedisConnection:
    """A ``redis.asyncio.Redis`` client for ``url`` (``redis://``, ``rediss://`` or
    ``unix://``): ``timeout`` seconds to connect and to read (``read_timeout`` if given),
    one immediate retry on a dropped connection. Raises ``ConfigurationError`` for a bad
    URL or a missing ``redis`` package; no message ever holds the URL's credentials."""
    shown = mask_url(url)
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Redis URL must start with redis://, rediss:// or unix://, got {shown!r}"
        )
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:
        raise ConfigurationError(f"a Redis URL needs the redis package: {INSTALL_HINT}") from None
    hidden = _url_secrets(url)
    try:
        client = Redis.from_url(
            url,
            socket_timeout=timeout if read_timeout is None else read_timeout,
            socket_connect_timeout=timeout,
            # One immediate retry on a dropped connection (a restarted server closes the
            # pooled ones), none on a timeout: a hung server costs one timeout, not several.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            health_check_interval=0,
        )
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {shown!r}: {_scrub(str(exc), hidden)}") from None
    return RedisConnection(client, shown, hidden)


def limiter_from_url(
    url: str,
    *,
    access_key: str | None = None,
    key: str | None = None,
    qps: float | None = None,
    timeout: float = 0.25,
    **options: Any,
) -> RedisRateLimiter:
    """A :class:`RedisRateLimiter` with its own client for ``url`` (``redis://``,
    ``rediss://`` or ``unix://``), closed with the limiter. ``options`` go to
    :class:`RedisRateLimiter`. Raises ``ConfigurationError`` for a bad URL or a missing
    ``redis`` package; no message ever holds the URL's credentials."""
    client, shown, hidden = redis_from_url(url, timeout=timeout)
    return RedisRateLimiter(
        client,
        access_key=access_key,
        key=key,
        qps=qps,
        timeout=timeout,
        owns_client=True,
        name=shown,
        secrets_to_hide=hidden,
        **options,
    )


@contextlib.asynccontextmanager
async def fleet_limiter(
    url: str | None, *, access_key: str, qps: float | None = None
) -> AsyncIterator[RedisRateLimiter | None]:
    """The command line's way in: a running fleet limiter for ``url``, or ``None`` when
    ``url`` is ``None`` or empty (then the waiter keeps its local limiter)."""
    if not url:
        yield None
        return
    async with limiter_from_url(url, access_key=access_key, qps=qps) as limiter:
        yield limiter
