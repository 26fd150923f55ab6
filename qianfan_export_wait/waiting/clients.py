"""What the waiter calls on a client, said as protocols, and the one seam it calls through.

A client needs only ``get_status`` (``StatusClient``). What more it offers is declared by
the small protocols below and read once, when the waiter is made: ``fetch_once`` (one
request, no retry of its own: the waiter schedules retries), ``ensure_connections``
(size its pool for the requests in flight) and ``credentials``/``base_url`` (named in the
log when authentication fails). ``ExportStatusClient`` offers all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeGuard, TypeVar, runtime_checkable

from ..errors import ConfigurationError
from ..models import ExportId, ExportStatus

__all__ = [
    "ClientSeam",
    "DescribedClient",
    "PooledClient",
    "SingleRequestClient",
    "StatusClient",
    "offers",
]

logger = logging.getLogger("qianfan_export_wait")

_P = TypeVar("_P")


def offers(obj: object, protocol: Callable[..., _P]) -> TypeGuard[_P]:
    """Whether ``obj`` has every member ``protocol`` declares. Looked up as attributes
    (as ``isinstance`` with a runtime-checkable protocol did before Python 3.12), so a
    proxy or a mock that makes its attributes on demand offers them too."""
    return all(hasattr(obj, name) for name in vars(protocol) if not name.startswith("_"))


@runtime_checkable
class StatusClient(Protocol):
    """What the waiter needs from a client: ``await get_status(export_id)``.

    ``ExportStatusClient`` is one. A client may also be a ``SingleRequestClient``, a
    ``PooledClient`` and a ``DescribedClient``; the waiter then uses those too.
    """

    async def get_status(self, export_id: ExportId) -> ExportStatus:
        """The current status of one export, or an ``ApiError``."""


@runtime_checkable
class SingleRequestClient(Protocol):
    """A client that sends one request per call, with no retry of its own."""

    async def fetch_once(self, export_id: ExportId) -> ExportStatus:
        """One status request for one export; its failure raised as an ``ApiError``."""


@runtime_checkable
class PooledClient(Protocol):
    """A client whose connection pool the waiter sizes for its requests in flight."""

    def ensure_connections(self, wanted: int) -> int:
        """Allow ``wanted`` requests at once if possible; return how many it allows."""


class _MaskedKey(Protocol):
    @property
    def masked_access_key(self) -> str: ...


@runtime_checkable
class DescribedClient(Protocol):
    """A client that can be named in a log line without its secret."""

    @property
    def credentials(self) -> _MaskedKey: ...

    @property
    def base_url(self) -> str: ...


class ClientSeam:
    """The client as the waiter calls it: ``fetch`` (one status request), ``connections``
    (what may be in flight) and ``describe`` (for the log), read once from ``client``."""

    __slots__ = ("_client", "fetch")

    def __init__(self, client: StatusClient | SingleRequestClient) -> None:
        self._client = client
        fetch: Callable[[ExportId], Awaitable[ExportStatus]]
        if offers(client, SingleRequestClient):
            fetch = client.fetch_once
        elif offers(client, StatusClient):
            fetch = client.get_status
        else:
            raise ConfigurationError(
                f"client must have an async get_status(export_id), got {type(client).__name__}"
            )
        self.fetch = fetch

    def connections(self, max_in_flight: int) -> int:
        """Size the client's pool for ``max_in_flight``; return the requests it allows."""
        client = self._client
        if not offers(client, PooledClient):
            return max_in_flight
        allowed = int(client.ensure_connections(max_in_flight))
        if allowed < max_in_flight:
            logger.warning(
                "max_in_flight=%d, but the client's connection pool allows %d; "
                "at most %d requests will be in flight",
                max_in_flight,
                allowed,
                allowed,
            )
        return min(allowed, max_in_flight)

    def describe(self) -> str:
        """Whose requests these are: the masked access key and the base URL."""
        client = self._client
        if not offers(client, DescribedClient):
            return "access key ? at ?"
        masked = client.credentials.masked_access_key
        return f"access key {masked or '?'} at {client.base_url or '?'}"
