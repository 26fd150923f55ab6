"""The ``qianfan_simulator`` fixture under every event-loop scope pytest-asyncio offers:
chosen by the test's marker (``loop_scope``) or by the ini defaults
(``asyncio_default_test_loop_scope``, ``asyncio_default_fixture_loop_scope``), the
simulator answers in the loop the test runs in. A test file runs in a pytest of its own."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# Each test asks the simulator for an export's status, giving up after 5 s: a simulator
# served from a loop that is not running accepts the connection and never answers.
EXAMPLES = """
import asyncio
import pytest

async def ask(fake):
    export = fake.add_export(finish_after=0)
    async with asyncio.timeout(5):
        async with fake.client(max_attempts=1) as client:
            status = await client.get_status(export.export_id)
    assert status.state_name == "Done"

@pytest.mark.asyncio
async def test_default_loop(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="function")
async def test_function_loop(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_first(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_second(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="package")
async def test_package_loop(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_first(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_second(qianfan_simulator):
    await ask(qianfan_simulator)

@pytest.mark.asyncio(loop_scope="class")
class TestClassLoop:
    async def test_first(self, qianfan_simulator):
        await ask(qianfan_simulator)

    async def test_second(self, qianfan_simulator):
        await ask(qianfan_simulator)

@pytest.mark.qianfan_simulator(exports=2, setenv=True)
@pytest.mark.asyncio(loop_scope="module")
async def test_marker_options_on_a_module_loop(qianfan_simulator):
    import os
    assert len(qianfan_simulator.simulator.exports) == 2
    assert os.environ["QIANFAN_CONSOLE_API_BASE_URL"] == qianfan_simulator.base_url
    await ask(qianfan_simulator)
"""
EXAMPLE_COUNT = 10


def run_examples(
    pytester: pytest.Pytester, mode: str, test_scope: str | None, fixture_scope: str
) -> pytest.RunResult:
    lines = [
        "[pytest]",
        f"asyncio_mode = {mode}",
        f"asyncio_default_fixture_loop_scope = {fixture_scope}",
    ]
    if test_scope is not None:
        lines.append(f"asyncio_default_test_loop_scope = {test_scope}")
    pytester.makeini("\n".join(lines) + "\n")
    # A package, so that the package loop scope has one to belong to.
    pytester.mkpydir("examples")
    pytester.path.joinpath("examples", "test_loops.py").write_text(EXAMPLES, encoding="utf-8")
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


@pytest.mark.parametrize(
    ("mode", "test_scope", "fixture_scope"),
    [
        ("strict", None, "function"),
        ("auto", None, "session"),
        ("auto", "module", "function"),
        ("strict", "session", "function"),
        ("auto", "session", "session"),
        ("auto", "function", "module"),
    ],
)
def test_the_simulator_answers_in_the_tests_loop_whatever_its_scope(
    pytester: pytest.Pytester, mode: str, test_scope: str | None, fixture_scope: str
) -> None:
    result = run_examples(pytester, mode, test_scope, fixture_scope)
    result.assert_outcomes(passed=EXAMPLE_COUNT)
