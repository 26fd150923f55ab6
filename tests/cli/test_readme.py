"""README.md and the docs/ pages as written: the README's Quickstart holds two commands,
the README stays short and links every page, and every Python example of the README and
of docs/*.md runs clean against the simulator started exactly as the docs' own command
starts it, with the environment they say to export (only the port is a free one)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_support import unused_port
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait.redis_limit import REDIS_URL_ENV

ROOT = Path(__file__).resolve().parents[2]
README_TEXT = (ROOT / "README.md").read_text("utf-8")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""The README first, then the docs pages: their examples run, in that order."""
DOC_TEXTS = {str(path.relative_to(ROOT)): path.read_text("utf-8") for path in DOCS}
PYTHON_BLOCKS = [
    block
    for text in DOC_TEXTS.values()
    for block in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
]
PYTHON_SOURCES = [
    name
    for name, text in DOC_TEXTS.items()
    for _ in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
]
"""The page each of ``PYTHON_BLOCKS`` comes from."""
BASH_BLOCKS = [
    block
    for text in DOC_TEXTS.values()
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
]
QUICKSTART = re.search(r"^## Quickstart.*?^```bash\n(.*?)^```", README_TEXT, re.S | re.M)
README_PORT = "8421"


def commands_of(block: str) -> list[str]:
    """The shell commands of a bash block, continuation lines joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def simulator_blocks() -> tuple[str, str]:
    """The block that starts the README's simulator, and the next one, which points
    clients at it."""
    [index] = [n for n, block in enumerate(BASH_BLOCKS) if "qianfan-export-wait simulate" in block]
    return BASH_BLOCKS[index], BASH_BLOCKS[index + 1]


def simulate_command() -> list[str]:
    """The README's ``qianfan-export-wait simulate ...`` as arguments of ``python -m``."""
    [command] = commands_of(simulator_blocks()[0])
    return shlex.split(command)[1:]


def exported_environment(port: int) -> dict[str, str]:
    """What the block after the simulator's exports, at ``port`` instead of 8421."""
    environment: dict[str, str] = {}
    for command in commands_of(simulator_blocks()[1]):
        if command.startswith("export "):
            for assignment in shlex.split(command)[1:]:
                name, _, value = assignment.partition("=")
                environment[name] = value.replace(README_PORT, str(port))
    return environment


@pytest.fixture(scope="module")
def readme_simulator() -> Iterator[dict[str, str]]:
    """The README's simulator, running as its command says, and the README's environment."""
    port = unused_port()
    arguments = simulate_command()
    arguments[arguments.index("--port") + 1] = str(port)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("QIANFAN_")
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "qianfan_export_wait", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    # The "Many replicas" example shares its limit through a real Redis when there is one
    # (CI installs it); without one it is skipped (CI fails it instead).
    binary = shutil.which("redis-server")
    redis = RedisServer(binary) if binary else None
    if redis is not None:
        redis.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:  # up to its "listening on" line
            if "listening on" in line:
                break
        else:
            pytest.fail("the README's simulator did not start")
        redis_url = redis.url if redis is not None else "redis://127.0.0.1:1/0"
        yield {**environment, **exported_environment(port), REDIS_URL_ENV: redis_url}
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
        if redis is not None:
            redis.stop()


def test_readme_and_docs_have_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 7
    assert "README.md" in PYTHON_SOURCES


def test_readme_is_short_and_links_every_docs_page() -> None:
    assert len(README_TEXT.splitlines()) < 200
    pages = [path.name for path in DOCS[1:]]
    assert len(pages) >= 6
    for name in pages:
        assert f"](docs/{name})" in README_TEXT, f"README does not link docs/{name}"


@pytest.mark.parametrize("name", sorted(DOC_TEXTS))
def test_every_relative_link_of_a_page_names_a_file_that_exists(name: str) -> None:
    base = (ROOT / name).parent
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOC_TEXTS[name]):
        assert (base / target).exists(), f"{name} links {target}, which does not exist"


def test_quickstart_block_holds_exactly_two_commands() -> None:
    assert QUICKSTART is not None
    commands = [line for line in QUICKSTART.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("qianfan-export-wait demo")
    assert "pytest" in commands[1]


def test_readme_points_clients_at_its_simulator_with_credentials_and_endpoints() -> None:
    names = set(exported_environment(9999))
    assert {
        "QIANFAN_ACCESS_KEY",
        "QIANFAN_SECRET_KEY",
        "QIANFAN_CONSOLE_API_BASE_URL",
        "QIANFAN_BOS_ENDPOINT",
    } <= names


SCRIPTS = [n for n, block in enumerate(PYTHON_BLOCKS) if "def test_" not in block]
PYTEST_EXAMPLES = [n for n, block in enumerate(PYTHON_BLOCKS) if "def test_" in block]


def example_id(index: int) -> str:
    return f"{PYTHON_SOURCES[index]}-{index}"


@pytest.mark.parametrize("index", SCRIPTS, ids=example_id)
def test_readme_python_example_runs_clean_against_the_readmes_simulator(
    index: int, readme_simulator: dict[str, str], tmp_path: Path
) -> None:
    if "limiter_from_url" in PYTHON_BLOCKS[index] and shutil.which("redis-server") is None:
        # The fleet must be there at start (an unreachable Redis is an error by design).
        require_redis_server()
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", PYTHON_BLOCKS[index]],
        capture_output=True,
        text=True,
        timeout=180,
        env=readme_simulator,
        cwd=tmp_path,  # where an example's relative folders (e.g. "exports") go
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert readme_simulator["QIANFAN_SECRET_KEY"] not in done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["strict", "auto"])
@pytest.mark.parametrize("index", PYTEST_EXAMPLES, ids=example_id)
def test_readme_pytest_example_passes_in_strict_and_auto_mode(
    index: int, mode: str, tmp_path: Path
) -> None:
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n",
        encoding="utf-8",
    )
    (tmp_path / "test_example.py").write_text(PYTHON_BLOCKS[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tests = PYTHON_BLOCKS[index].count("def test_")
    assert f"{tests} passed" in done.stdout
