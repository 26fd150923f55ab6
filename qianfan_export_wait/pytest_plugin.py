"""pytest plugin: the ``qianfan_simulator`` fixture, a simulated Qianfan per test.

::

    async def test_waits(qianfan_simulator):
        qianfan_simulator.add_export(finish_after=0.1)
        async with qianfan_simulator.client() as client:
            ...

Options go in a marker: ``@pytest.mark.qianfan_simulator(exports=10, qps=5)`` passes
them to ``qianfan_export_wait.testing.simulated_qianfan``. The fixture needs
pytest-asyncio; without it, tests using it are skipped and nothing else is affected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
        f"{_MARKER}(**options): options for the qianfan_simulator fixture "
        "(exports, seed, qps, faults, max_seconds, fail_ratio, ...)",
    )


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(_MARKER)
    return dict(marker.kwargs) if marker is not None else {}


if pytest_asyncio is not None:

    @pytest_asyncio.fixture(name="qianfan_simulator")
    async def _qianfan_simulator(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[SimulatedQianfan]:
        """A running simulator with a random AK/SK; see ``simulated_qianfan``."""
        from .testing import simulated_qianfan

        async with simulated_qianfan(**_marker_options(request)) as fake:
            yield fake

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture(name="qianfan_simulator")
    def _qianfan_simulator_unavailable() -> None:
        """Skips: the simulator fixture is async and needs pytest-asyncio."""
        pytest.skip("the qianfan_simulator fixture needs pytest-asyncio")
