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

``qianfan_simulator`` is served in the event loop the test runs in, whatever its scope
(``@pytest.mark.asyncio(loop_scope="module")``, ``asyncio_default_test_loop_scope``;
``asyncio_default_fixture_loop_scope`` does not matter to it). It needs pytest-asyncio;
without it, tests using it are skipped.
Asked for by a plain (sync) test it fails with a pointer to ``qianfan_simulator_sync``:
its server would never answer there. Importing this plugin imports nothing of the
library (no aiohttp) until a fixture is used.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

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


_LoopScope = Literal["function", "class", "module", "package", "session"]
_LOOP_SCOPES: tuple[_LoopScope, ...] = ("function", "class", "module", "package", "session")


def _test_loop_scope(request: pytest.FixtureRequest) -> str:
    """The scope of the event loop the test runs in, as pytest-asyncio decides it: the
    closest ``asyncio`` marker's ``loop_scope``, else ``asyncio_default_test_loop_scope``,
    else ``function``."""
    marker = request.node.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        try:
            scope = request.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # a pytest-asyncio without the option: function loops
            scope = None
    return str(scope or "function")


def _scoped_fixture_name(scope: str) -> str:
    return f"_qianfan_simulator_on_{scope}_loop"


def _simulator_fixture_body() -> Any:
    """A fresh fixture function (pytest-asyncio marks the function object with its loop
    scope, so each scope needs its own)."""

    async def serve(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[SimulatedQianfan]:
        from .testing import simulated_qianfan

        options, setenv = _marker_options(request)
        async with simulated_qianfan(**options) as fake:
            if setenv:
                _apply_environ(fake, monkeypatch)
            yield fake

    return serve


_SCOPES_SERVED: list[str] = []
if pytest_asyncio is not None:
    # One simulator fixture per loop scope, each run in that scope's loop: the public
    # fixture picks the one whose loop is the test's, whatever the loop scope defaults
    # (asyncio_default_fixture_loop_scope) say. A pytest-asyncio older than 0.24 knows
    # no loop scopes but the function's.
    _takes_loop_scope = "loop_scope" in inspect.signature(pytest_asyncio.fixture).parameters
    for _scope in _LOOP_SCOPES if _takes_loop_scope else ("function",):
        _name = _scoped_fixture_name(_scope)
        _decorate = (
            pytest_asyncio.fixture(name=_name, loop_scope=_scope)
            if _takes_loop_scope
            else pytest_asyncio.fixture(name=_name)
        )
        # pytest finds fixtures among the plugin module's names.
        globals()[_name] = _decorate(_simulator_fixture_body())
        _SCOPES_SERVED.append(_scope)

    @pytest.fixture(name="qianfan_simulator")
    def _qianfan_simulator(request: pytest.FixtureRequest) -> SimulatedQianfan:
        """A running simulator with a random AK/SK, in the test's event loop (of any loop
        scope); see ``simulated_qianfan``."""
        if not inspect.iscoroutinefunction(getattr(request, "function", None)):
            pytest.fail(
                "qianfan_simulator runs in the test's event loop, so a plain (sync) test "
                "would get a server that never answers: use qianfan_simulator_sync",
                pytrace=False,
            )
        scope = _test_loop_scope(request)
        if scope not in _SCOPES_SERVED:
            pytest.fail(
                f"qianfan_simulator cannot serve a test whose event loop has scope "
                f"{scope!r}: this pytest-asyncio offers only a function-scoped loop to "
                "fixtures; install pytest-asyncio>=0.24, or run the test on the "
                "function loop",
                pytrace=False,
            )
        fake: SimulatedQianfan = request.getfixturevalue(_scoped_fixture_name(scope))
        return fake

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture(name="qianfan_simulator")
    def _qianfan_simulator_unavailable() -> None:
        """Skips: the simulator fixture is async and needs pytest-asyncio."""
        pytest.skip("the qianfan_simulator fixture needs pytest-asyncio")
