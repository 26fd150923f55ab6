"""``qianfan_export_wait.testing`` and the pytest plugin, as users meet them: the async and
sync fixtures, their marker options (``setenv``), strict and auto mode, a fast policy, and
a plugin that imports nothing heavy until a fixture is used."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import qianfan_export_wait.pytest_plugin as plugin
from qianfan_export_wait import ExportState, ExportWaiter
from qianfan_export_wait.client import EXPORT_STATUS_PATH
from qianfan_export_wait.testing import (
    SimulatedQianfan,
    fast_policy,
    signed_status_headers,
    simulated_qianfan,
)

pytest_plugins = ["pytester"]

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
VARIABLES = (
    "QIANFAN_ACCESS_KEY",
    "QIANFAN_SECRET_KEY",
    "QIANFAN_CONSOLE_API_BASE_URL",
    "QIANFAN_BOS_ENDPOINT",
)


def docstring_examples() -> list[str]:
    """The code blocks of the plugin's docstring, dedented."""
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", plugin.__doc__ or "")
    return [re.sub(r"^    ", "", block, flags=re.M) for block in blocks]


def run_in_pytest(pytester: pytest.Pytester, code: str, mode: str) -> pytest.RunResult:
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_example=code)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


# --- the async fixture ----------------------------------------------------------------------


async def test_fixture_serves_a_working_simulator(qianfan_simulator: SimulatedQianfan) -> None:
    qianfan_simulator.add_export(finish_after=0)
    async with qianfan_simulator.client(max_attempts=1) as client:
        status = await client.get_status(1)
    assert status.state is ExportState.DONE


@pytest.mark.qianfan_simulator(exports=4, qps=7)
async def test_fixture_takes_options_from_its_marker(qianfan_simulator: SimulatedQianfan) -> None:
    assert len(qianfan_simulator.simulator.exports) == 4
    assert qianfan_simulator.simulator.config.qps == 7


@pytest.mark.qianfan_simulator(setenv=True)
async def test_fixture_with_setenv_points_the_environment_at_the_simulator(
    qianfan_simulator: SimulatedQianfan,
) -> None:
    assert {name: os.environ[name] for name in VARIABLES} == qianfan_simulator.environ
    assert os.environ["QIANFAN_CONSOLE_API_BASE_URL"] == qianfan_simulator.base_url


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_plugins_docstring_examples_pass_in_strict_and_auto_mode(
    pytester: pytest.Pytester, mode: str
) -> None:
    examples = docstring_examples()
    assert len(examples) == 2
    result = run_in_pytest(pytester, "\n\n".join(examples), mode)
    result.assert_outcomes(passed=2)


def test_the_async_fixture_in_a_plain_test_fails_pointing_to_the_sync_one(
    pytester: pytest.Pytester,
) -> None:
    code = "def test_plain(qianfan_simulator):\n    pass\n"
    result = run_in_pytest(pytester, code, "auto")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*use qianfan_simulator_sync*"])


def test_setenv_is_undone_after_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = (
        "import os, pytest\n"
        "@pytest.mark.qianfan_simulator(setenv=True)\n"
        "async def test_one(qianfan_simulator):\n"
        "    assert os.environ['QIANFAN_ACCESS_KEY'] == qianfan_simulator.credentials.access_key\n"
        "def test_two():\n"
        "    assert 'QIANFAN_ACCESS_KEY' not in os.environ\n"
    )
    monkeypatch.delenv("QIANFAN_ACCESS_KEY", raising=False)
    run_in_pytest(pytester, code, "auto").assert_outcomes(passed=2)


# --- the sync fixture -----------------------------------------------------------------------


def post_status(fake: SimulatedQianfan, export_id: int) -> dict[str, object]:
    """A status request as synchronous code sends it (urllib, no event loop)."""
    request = urllib.request.Request(
        fake.base_url + EXPORT_STATUS_PATH,
        data=json.dumps({"exportID": export_id}).encode(),
        headers=signed_status_headers(fake.credentials, fake.base_url),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def test_sync_fixture_answers_a_plain_test(qianfan_simulator_sync: SimulatedQianfan) -> None:
    export = qianfan_simulator_sync.add_export(finish_after=None)
    assert post_status(qianfan_simulator_sync, export.export_id)["result"]["state"] == "Pending"  # type: ignore[index]
    qianfan_simulator_sync.complete(export.export_id)  # run in the simulator's own loop
    assert post_status(qianfan_simulator_sync, export.export_id)["result"]["state"] == "Done"  # type: ignore[index]


@pytest.mark.qianfan_simulator(exports=2, max_seconds=0, setenv=True)
def test_sync_fixture_with_setenv_points_the_environment_at_it(
    qianfan_simulator_sync: SimulatedQianfan,
) -> None:
    assert os.environ["QIANFAN_CONSOLE_API_BASE_URL"] == qianfan_simulator_sync.base_url
    assert len(qianfan_simulator_sync.simulator.exports) == 2


# --- fast_policy, the extra, the imports ----------------------------------------------------


async def test_fast_policy_waits_about_as_long_as_the_exports_take() -> None:
    async with simulated_qianfan(exports=20, max_seconds=0.2) as fake:
        async with fake.client() as client:
            started = time.monotonic()
            report = await ExportWaiter(client, policy=fast_policy()).wait_all(range(1, 21))
            elapsed = time.monotonic() - started
    assert report.ok
    assert elapsed < 1.9  # the default policy's first wait alone is 2 s


def test_fast_policy_takes_changes() -> None:
    assert fast_policy(timeout=5).timeout == 5


def test_the_testing_extra_is_pytest_and_pytest_asyncio_only() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["optional-dependencies"]
    names = sorted(re.split(r"[<>=!~ ]", requirement)[0] for requirement in extras["testing"])
    assert names == ["pytest", "pytest-asyncio"]


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    probe = (
        "import sys, qianfan_export_wait.pytest_plugin\n"
        "print([m for m in ('aiohttp', 'tenacity', 'yarl', 'qianfan_export_wait.client')"
        " if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
