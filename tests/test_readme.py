"""Every Python example in README.md runs, against a simulator standing in for Qianfan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import RedisServer

from qianfan_export_wait.redis_limit import REDIS_URL_ENV
from qianfan_export_wait.simulator import Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials, serve_in_thread

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text("utf-8"), re.S | re.M)
QUICKSTART = re.search(
    r"^## Quickstart.*?^```bash\n(.*?)^```", README.read_text("utf-8"), re.S | re.M
)


@pytest.fixture(scope="module")
def qianfan_env() -> Iterator[dict[str, str]]:
    credentials = generate_credentials()
    simulator = Simulator(credentials, SimulatorConfig(seed=3))
    simulator.add_exports(120, max_seconds=1.0, fail_ratio=0.0)
    # The "Many replicas" example shares its limit through a real Redis when there is one
    # (CI installs it); without one it shows the fallback instead, and still runs.
    binary = shutil.which("redis-server")
    redis = RedisServer(binary) if binary else None
    if redis is not None:
        redis.start()
    try:
        with serve_in_thread(simulator) as base_url:
            yield {
                **os.environ,
                "QIANFAN_ACCESS_KEY": credentials.access_key,
                "QIANFAN_SECRET_KEY": credentials.secret_key,
                "QIANFAN_CONSOLE_API_BASE_URL": base_url,
                REDIS_URL_ENV: redis.url if redis else "redis://127.0.0.1:1/0",
                # Storage exports' files come from the simulator's BOS, like the status API.
                "QIANFAN_BOS_ENDPOINT": base_url,
            }
    finally:
        if redis is not None:
            redis.stop()


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 3


def test_quickstart_block_holds_exactly_two_commands() -> None:
    assert QUICKSTART is not None
    commands = [line for line in QUICKSTART.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("qianfan-export-wait demo")
    assert "pytest" in commands[1]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(
    index: int, qianfan_env: dict[str, str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", PYTHON_BLOCKS[index]],
        capture_output=True,
        text=True,
        timeout=120,
        env=qianfan_env,
        cwd=tmp_path,  # where an example's relative folders (e.g. "exports") go
    )
    assert done.returncode == 0, done.stderr
    assert qianfan_env["QIANFAN_SECRET_KEY"] not in done.stdout + done.stderr
