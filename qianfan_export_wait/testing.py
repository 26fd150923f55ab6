"""Test helpers: a simulated Qianfan on 127.0.0.1 with a matching client.

::

    async with simulated_qianfan(exports=10, qps=5) as fake:
        async with fake.client() as client:
            waiter = ExportWaiter(client, policy=fast_policy())
            report = await waiter.wait_all(range(1, 11))

    with simulated_qianfan_in_thread(exports=3) as fake:   # for synchronous code
        os.environ.update(fake.environ)                      # what the official SDK reads
        ...

The pytest plugin offers them as the ``qianfan_simulator`` and ``qianfan_simulator_sync``
fixtures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from yarl import URL

from .auth import Credentials
from .client import ExportStatusClient
from .downloads.bos import BOS_ENDPOINT_ENV
from .endpoints import BASE_URL_ENV, host_header, status_request_headers
from .protocol import SIGNED_HEADERS
from .simulator import FaultRates, SimExport, Simulator, SimulatorConfig, SimulatorStats
from .simulator.config import ApiChoice
from .simulator.evaluations import SimEvaluation
from .simulator.exports import ExportType
from .waiting import PollPolicy

__all__ = [
    "SimulatedQianfan",
    "fast_policy",
    "generate_credentials",
    "serve_in_thread",
    "signed_status_headers",
    "simulated_qianfan",
    "simulated_qianfan_in_thread",
]

_T = TypeVar("_T")


class _Call(Protocol):
    """Runs a function where the simulator lives (here, or in its server thread)."""

    def __call__(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...


def fast_policy(**changes: Any) -> PollPolicy:
    """A ``PollPolicy`` for tests: polls every 10-50 ms and gives up after 30 s, so a test
    waits about as long as its exports take (``changes`` override any field)."""
    options: dict[str, Any] = {"min_delay": 0.01, "max_delay": 0.05, "timeout": 30.0}
    options.update(changes)
    return PollPolicy(**options)


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
    ``simulator`` itself, and shortcuts to drive exports and make clients.

    Served from another thread (``simulated_qianfan_in_thread``), the shortcuts run in
    the simulator's own event loop, so a synchronous test can drive it safely.
    """

    def __init__(
        self,
        simulator: Simulator,
        base_url: str,
        *,
        call: _Call | None = None,
    ) -> None:
        self.simulator = simulator
        self.base_url = base_url
        self.credentials = simulator.credentials
        self._call: _Call = call or _call_here

    def __repr__(self) -> str:
        return f"SimulatedQianfan(base_url={self.base_url!r}, credentials={self.credentials!r})"

    @property
    def stats(self) -> SimulatorStats:
        """The simulator's live counters."""
        return self.simulator.stats

    @property
    def environ(self) -> dict[str, str]:
        """The variables that point code at this simulator: ``QIANFAN_ACCESS_KEY``,
        ``QIANFAN_SECRET_KEY``, ``QIANFAN_CONSOLE_API_BASE_URL`` (what this library and the
        official SDK read) and ``QIANFAN_BOS_ENDPOINT`` (where storage files come from)."""
        return {
            "QIANFAN_ACCESS_KEY": self.credentials.access_key,
            "QIANFAN_SECRET_KEY": self.credentials.secret_key,
            BASE_URL_ENV: self.base_url,
            BOS_ENDPOINT_ENV: self.base_url,
        }

    def add_export(
        self,
        finish_after: float | None = 3.0,
        fail: bool = False,
        export_type: ExportType = "local",
        uploading_after: float | None = None,
        export_id: int | None = None,
    ) -> SimExport:
        """Add one export (see ``Simulator.add_export``)."""
        return self._call(
            self.simulator.add_export, finish_after, fail, export_type, uploading_after, export_id
        )

    def add_exports(
        self, n: int, max_seconds: float = 8.0, fail_ratio: float = 0.1
    ) -> list[SimExport]:
        """Add ``n`` exports (see ``Simulator.add_exports``)."""
        return self._call(self.simulator.add_exports, n, max_seconds, fail_ratio)

    def add_evaluation(self, finish_after: float | None = 3.0, **options: Any) -> SimEvaluation:
        """Add one evaluation (see ``Simulator.add_evaluation``)."""
        return self._call(self.simulator.add_evaluation, finish_after, **options)

    def creates_by_evaluation(self) -> dict[int, int]:
        """How many exports were created for each evaluation id."""
        return self._call(self.simulator.creates_by_evaluation)

    def complete(self, export_id: int | str) -> SimExport:
        """Make an export Done now."""
        return self._call(self.simulator.complete, export_id)

    def fail(self, export_id: int | str) -> SimExport:
        """Make an export Fail now."""
        return self._call(self.simulator.fail, export_id)

    def hold(self, export_id: int | str) -> SimExport:
        """Keep an export from finishing until ``complete``/``fail``."""
        return self._call(self.simulator.hold, export_id)

    def state_of(self, export_id: int | str) -> str:
        """An export's state now."""
        return self._call(self.simulator.state_of, export_id)

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change simulator knobs mid-test (see ``Simulator.configure``)."""
        return self._call(self.simulator.configure, **changes)

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
    api: ApiChoice = "both",
    **config: Any,
) -> AsyncIterator[SimulatedQianfan]:
    """Serve a simulator on 127.0.0.1 for the duration of the block.

    ``exports`` are added as ``Simulator.add_exports(exports, max_seconds, fail_ratio)``;
    ``faults`` is a ``FaultRates`` or a combined rate split evenly; other keywords
    (``slow_delay``, ``retry_after``, ``clock_skew``, ``qps_window``) go to
    ``SimulatorConfig``. Without ``credentials`` a random test pair is made. ``api``
    (``"v1"``, ``"v2"``, ``"both"``) is the generations of the API served.
    """
    simulator = _simulator_for(
        exports, seed, qps, faults, max_seconds, fail_ratio, credentials, {"api": api, **config}
    )
    async with simulator.serve("127.0.0.1", 0) as base_url:
        yield SimulatedQianfan(simulator, base_url)


def _call_here(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return function(*args, **kwargs)


def _simulator_for(
    exports: int,
    seed: int,
    qps: int | None,
    faults: FaultRates | float | None,
    max_seconds: float,
    fail_ratio: float,
    credentials: Credentials | None,
    config: dict[str, Any],
) -> Simulator:
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
    return simulator


class _ServerThread:
    """A simulator served by an event loop of its own, in a daemon thread."""

    def __init__(self, simulator: Simulator, host: str, port: int, timeout: float) -> None:
        self._simulator = simulator
        self._host = host
        self._port = port
        self._timeout = timeout
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="qianfan-simulator", daemon=True)
        self.base_url = ""

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise TimeoutError(f"simulator did not start within {self._timeout:g} s")
        if self._errors:
            self._thread.join(self._timeout)
            raise self._errors[0]
        return self.base_url

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self._timeout)

    def call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``function(*args, **kwargs)`` run in the server's loop; its result or error."""
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(function(*args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result(self._timeout)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with self._simulator.serve(self._host, self._port) as base_url:
                self.base_url = base_url
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # reported to the caller's thread by start()
            self._errors.append(exc)
            self._ready.set()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()


@contextmanager
def serve_in_thread(
    simulator: Simulator, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``simulator`` from a background thread with its own event loop, for
    synchronous callers (the official SDK, ``requests``); yields the base URL."""
    server = _ServerThread(simulator, host, port, timeout)
    base_url = server.start()
    try:
        yield base_url
    finally:
        server.stop()


@contextmanager
def simulated_qianfan_in_thread(
    exports: int = 0,
    seed: int = 0,
    qps: int | None = None,
    faults: FaultRates | float | None = None,
    max_seconds: float = 5.0,
    fail_ratio: float = 0.0,
    credentials: Credentials | None = None,
    api: ApiChoice = "both",
    **config: Any,
) -> Iterator[SimulatedQianfan]:
    """``simulated_qianfan`` for synchronous code: the simulator runs in a thread of its
    own on 127.0.0.1, so plain tests (the official SDK, ``requests``) can call it, and
    its shortcuts (``complete``, ``add_export``...) run safely in its loop."""
    simulator = _simulator_for(
        exports, seed, qps, faults, max_seconds, fail_ratio, credentials, {"api": api, **config}
    )
    server = _ServerThread(simulator, "127.0.0.1", 0, 10.0)
    base_url = server.start()
    try:
        yield SimulatedQianfan(simulator, base_url, call=server.call)
    finally:
        server.stop()
