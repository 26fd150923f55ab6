"""Test helpers: a simulated Qianfan on 127.0.0.1 with a matching client.

::

    async with simulated_qianfan(exports=10, qps=5) as fake:
        async with fake.client() as client:
            status = await client.get_status(1)

The pytest plugin offers the same object as the ``qianfan_simulator`` fixture.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

from yarl import URL

from .auth import Credentials
from .client import SIGNED_HEADERS, ExportStatusClient, host_header, status_request_headers
from .simulator import FaultRates, SimExport, Simulator, SimulatorConfig, SimulatorStats
from .simulator.exports import ExportType

__all__ = [
    "SimulatedQianfan",
    "generate_credentials",
    "serve_in_thread",
    "signed_status_headers",
    "simulated_qianfan",
]


def generate_credentials() -> Credentials:
    """A fresh random AK/SK pair for a test (never a real account's)."""
    return Credentials(f"simak{secrets.token_hex(14)}", secrets.token_hex(16))


def signed_status_headers(
    credentials: Credentials,
    base_url: str,
    *,
    timestamp: str | datetime | int | float | None = None,
    expiration_seconds: int = 1800,
    headers_to_sign: tuple[str, ...] | None = SIGNED_HEADERS,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers for a hand-made status ``POST`` to ``base_url``, signed like the client
    signs them (``timestamp`` default: now), for tests that need raw HTTP access."""
    return status_request_headers(
        credentials,
        host_header(URL(base_url)),
        timestamp,
        expiration_seconds=expiration_seconds,
        headers_to_sign=headers_to_sign,
        extra_headers=extra_headers,
    )


class SimulatedQianfan:
    """A running simulator: its ``base_url``, the ``credentials`` it accepts, the
    ``simulator`` itself, and shortcuts to drive exports and make clients."""

    def __init__(self, simulator: Simulator, base_url: str) -> None:
        self.simulator = simulator
        self.base_url = base_url
        self.credentials = simulator.credentials

    def __repr__(self) -> str:
        return f"SimulatedQianfan(base_url={self.base_url!r}, credentials={self.credentials!r})"

    @property
    def stats(self) -> SimulatorStats:
        """The simulator's live counters."""
        return self.simulator.stats

    def add_export(
        self,
        finish_after: float | None = 3.0,
        fail: bool = False,
        export_type: ExportType = "local",
        uploading_after: float | None = None,
        export_id: int | None = None,
    ) -> SimExport:
        """Add one export (see ``Simulator.add_export``)."""
        return self.simulator.add_export(
            finish_after, fail, export_type, uploading_after, export_id
        )

    def add_exports(
        self, n: int, max_seconds: float = 8.0, fail_ratio: float = 0.1
    ) -> list[SimExport]:
        """Add ``n`` exports (see ``Simulator.add_exports``)."""
        return self.simulator.add_exports(n, max_seconds, fail_ratio)

    def complete(self, export_id: int | str) -> SimExport:
        """Make an export Done now."""
        return self.simulator.complete(export_id)

    def fail(self, export_id: int | str) -> SimExport:
        """Make an export Fail now."""
        return self.simulator.fail(export_id)

    def hold(self, export_id: int | str) -> SimExport:
        """Keep an export from finishing until ``complete``/``fail``."""
        return self.simulator.hold(export_id)

    def state_of(self, export_id: int | str) -> str:
        """An export's state now."""
        return self.simulator.state_of(export_id)

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change simulator knobs mid-test (see ``Simulator.configure``)."""
        return self.simulator.configure(**changes)

    def client(self, **kwargs: Any) -> ExportStatusClient:
        """An ``ExportStatusClient`` for this simulator; use it with ``async with``."""
        kwargs.setdefault("base_url", self.base_url)
        return ExportStatusClient(self.credentials, **kwargs)


@asynccontextmanager
async def simulated_qianfan(
    exports: int = 0,
    seed: int = 0,
    qps: int | None = None,
    faults: FaultRates | float | None = None,
    max_seconds: float = 5.0,
    fail_ratio: float = 0.0,
    credentials: Credentials | None = None,
    **config: Any,
) -> AsyncIterator[SimulatedQianfan]:
    """Serve a simulator on 127.0.0.1 for the duration of the block.

    ``exports`` are added as ``Simulator.add_exports(exports, max_seconds, fail_ratio)``;
    ``faults`` is a ``FaultRates`` or a combined rate split evenly; other keywords
    (``slow_delay``, ``retry_after``, ``clock_skew``, ``qps_window``) go to
    ``SimulatorConfig``. Without ``credentials`` a random test pair is made.
    """
    if faults is None:
        rates = FaultRates()
    elif isinstance(faults, FaultRates):
        rates = faults
    else:
        rates = FaultRates.even(faults)
    simulator = Simulator(
        credentials or generate_credentials(),
        SimulatorConfig(seed=seed, qps=qps, faults=rates, **config),
    )
    if exports:
        simulator.add_exports(exports, max_seconds=max_seconds, fail_ratio=fail_ratio)
    async with simulator.serve("127.0.0.1", 0) as base_url:
        yield SimulatedQianfan(simulator, base_url)


@contextmanager
def serve_in_thread(
    simulator: Simulator, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``simulator`` from a background thread with its own event loop, for
    synchronous callers (the official SDK, ``requests``); yields the base URL."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    base_urls: list[str] = []
    errors: list[BaseException] = []

    async def serve() -> None:
        try:
            async with simulator.serve(host, port) as base_url:
                base_urls.append(base_url)
                ready.set()
                await stop.wait()
        except Exception as exc:  # reported to the caller's thread below
            errors.append(exc)
            ready.set()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="qianfan-simulator", daemon=True)
    thread.start()
    if not ready.wait(timeout):
        raise TimeoutError(f"simulator did not start within {timeout:g} s")
    if errors:
        thread.join(timeout)
        raise errors[0]
    try:
        yield base_urls[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
