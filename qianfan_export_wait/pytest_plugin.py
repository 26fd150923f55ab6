"""pytest plugin: a simulated Qianfan per test, as a fixture.

In async tests (pytest-asyncio, in its default strict mode or in auto mode)::

    import pytest
    from qianfan_export_wait import ExportWaiter
    from qianfan_export_wait.testing import fast_policy

    @pytest.mark.asyncio  # needed in strict mode; harmless in auto mode
    async def test_waits(qianfan_simulator):
        export = qianfan_simulator.add_export(finish_after=0.1)
        async with qianfan_simulator.client() as client:
            waiter = ExportWaiter(client, policy=fast_policy())
            assert (await waiter.wait(export.export_id)).state_name == "Done"

In plain tests, for code that uses the official SDK or ``requests`` (the simulator runs
in a thread of its own)::

    @pytest.mark.qianfan_simulator(exports=3, setenv=True)
    def test_my_sync_code(qianfan_simulator_sync):
        ...  # QIANFAN_ACCESS_KEY, QIANFAN_SECRET_KEY, QIANFAN_CONSOLE_API_BASE_URL and
             # QIANFAN_BOS_ENDPOINT point at the simulator for this test

Options go in the ``qianfan_simulator`` marker: those of
``qianfan_export_wait.testing.simulated_qianfan`` (``exports``, ``seed``, ``qps``,
``faults``, ``max_seconds``, ``fail_ratio``, ``credentials``, ``SimulatorConfig``
fields), and ``setenv=True`` to set the variables above for the test (undone after it).

``qianfan_simulator`` needs pytest-asyncio; without it, tests using it are skipped.
Asked for by a plain (sync) test it fails with a pointer to ``qianfan_simulator_sync``:
its server would never answer there. Importing this plugin imports nothing of the
library (no aiohttp) until a fixture is used.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import SimulatedQianfan

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["pytest_configure"]

_MARKER = "qianfan_simulator"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``qianfan_simulator`` marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): options for the qianfan_simulator fixtures "
        "(exports, seed, qps, faults, max_seconds, fail_ratio, ...; setenv=True sets "
        "the QIANFAN_* variables for the test)",
    )


def _marker_options(request: pytest.FixtureRequest) -> tuple[dict[str, Any], bool]:
    marker = request.node.get_closest_marker(_MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    setenv = bool(options.pop("setenv", False))
    return options, setenv


def _apply_environ(fake: SimulatedQianfan, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fake.environ.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(name="qianfan_simulator_sync")
def _qianfan_simulator_sync(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SimulatedQianfan]:
    """A simulator served from its own thread, for plain tests; see
    ``simulated_qianfan_in_thread``."""
    from .testing import simulated_qianfan_in_thread

    options, setenv = _marker_options(request)
    with simulated_qianfan_in_thread(**options) as fake:
        if setenv:
            _apply_environ(fake, monkeypatch)
        yield fake


if pytest_asyncio is not None:

    @pytest_asyncio.fixture(name="qianfan_simulator")
    async def _qianfan_simulator(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[SimulatedQianfan]:
        """A running simulator with a random AK/SK, in the test's event loop; see
        ``simulated_qianfan``."""
        if not inspect.iscoroutinefunction(getattr(request, "function", None)):
            pytest.fail(
                "qianfan_simulator runs in the test's event loop, so a plain (sync) test "
                "would get a server that never answers: use qianfan_simulator_sync",
                pytrace=False,
            )
        from .testing import simulated_qianfan

        options, setenv = _marker_options(request)
        async with simulated_qianfan(**options) as fake:
            if setenv:
                _apply_environ(fake, monkeypatch)
            yield fake

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture(name="qianfan_simulator")
    def _qianfan_simulator_unavailable() -> None:
        """Skips: the simulator fixture is async and needs pytest-asyncio."""
        pytest.skip("the qianfan_simulator fixture needs pytest-asyncio")
