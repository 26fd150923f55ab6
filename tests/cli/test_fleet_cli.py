"""``qianfan-export-wait wait --redis-url``: several CLI processes share one rate limit
through a real redis-server, and survive its faults (the simulator runs in this process)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from hardening_support import ACCESS_KEY, CLI, SECRET_KEY, cli_env, run_cli, unused_port
from rate_support import max_in_any_second
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait import Credentials
from qianfan_export_wait._fleet import fleet_key
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
PASSWORD = "cli-redis-pa55-do-not-leak"
LIMIT = 20  # the simulator's limit
QPS = 10  # the fleet's: half of it, so jitter alone can never reach the limit


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(credentials=CREDENTIALS, qps=LIMIT) as running:
        running.stats.keep_request_log()
        yield running


def add_exports(fake: SimulatedQianfan, count: int, spread: float) -> list[int]:
    return [fake.add_export(finish_after=spread * (n + 1) / count).export_id for n in range(count)]


async def start_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def wait_args(fake: SimulatedQianfan, ids: list[int], *extra: str) -> list[str]:
    return [
        "wait",
        *map(str, ids),
        "--endpoint",
        fake.base_url,
        "--min-delay",
        "0.1",
        "--max-delay",
        "0.3",
        "--no-progress",
        *extra,
    ]


async def test_processes_sharing_redis_stay_within_one_qps_through_restart_stop_and_a_kill(
    fake: SimulatedQianfan, redis_server: RedisServer
) -> None:
    groups = [add_exports(fake, 40, spread=8.0) for _ in range(3)]
    env = cli_env()
    processes = [
        await start_cli(
            *wait_args(fake, ids, "--qps", str(QPS), "--redis-url", redis_server.url), env=env
        )
        for ids in groups
    ]
    outputs = [asyncio.ensure_future(process.communicate()) for process in processes]
    # Mid-run: once every replica has beaten and read the others' heartbeats.
    replicas = fleet_key(ACCESS_KEY) + ":replicas"
    deadline = time.monotonic() + 30
    while redis_server.command("ZCARD", replicas) != b":3\r\n":
        assert time.monotonic() < deadline, "the replicas never all joined"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.2)
    await asyncio.to_thread(redis_server.restart)  # keys and scripts gone
    await asyncio.sleep(2.0)
    await asyncio.to_thread(redis_server.stop)  # unreachable: local fallback
    await asyncio.sleep(1.5)
    await asyncio.to_thread(redis_server.start)  # back to the shared limit
    await asyncio.sleep(1.0)
    processes[2].send_signal(signal.SIGKILL)
    done = await asyncio.wait_for(asyncio.gather(*outputs), timeout=60)

    for process, (stdout, stderr), ids in zip(processes[:2], done[:2], groups[:2], strict=True):
        assert process.returncode == 0, stderr.decode()
        records = [json.loads(line) for line in stdout.decode().splitlines()]
        assert [record["export_id"] for record in records] == ids
        assert {record["outcome"] for record in records} == {"done"}
        # One warning per outage: the stop, and the restart if a call fell in its gap.
        assert 1 <= stderr.decode().count("did not answer") <= 2
        assert "answers again" in stderr.decode()
    assert processes[2].returncode == -signal.SIGKILL
    assert fake.stats.requests_by_outcome["throttled"] == 0
    sent = [at for at, _ in fake.stats.request_log or ()]
    assert max_in_any_second(sent) <= LIMIT


async def test_processes_sharing_redis_without_qps_adapt_together_and_finish(
    fake: SimulatedQianfan, redis_server: RedisServer
) -> None:
    groups = [add_exports(fake, 30, spread=3.0) for _ in range(2)]
    runs = await asyncio.gather(
        *(
            run_cli(*wait_args(fake, ids, "--redis-url", redis_server.url), timeout=60)
            for ids in groups
        )
    )
    for run, ids in zip(runs, groups, strict=True):
        assert run.code == 0, run.stderr
        assert [record["export_id"] for record in run.records] == ids
    shared_state = fleet_key(ACCESS_KEY) + ":limiter"
    assert redis_server.command("HEXISTS", shared_state, "ceil") == b":1\r\n"


async def test_the_environment_variable_gives_the_redis_url(
    fake: SimulatedQianfan,
) -> None:
    ids = add_exports(fake, 3, spread=0.5)
    port = unused_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    run = await run_cli(
        *wait_args(fake, ids, "--qps", "5"), env=cli_env(QIANFAN_EXPORT_WAIT_REDIS_URL=url)
    )
    assert run.code == 69
    assert f"127.0.0.1:{port}" in run.stderr  # it tried the URL from the environment...
    assert PASSWORD not in run.stderr + run.stdout  # ...and never showed its password


async def test_an_unreachable_redis_at_start_exits_69_naming_the_host_before_any_request(
    fake: SimulatedQianfan,
) -> None:
    ids = add_exports(fake, 20, spread=1.0)
    port = unused_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    # A bound for a loaded machine, not a measurement: it used to run the whole wait.
    run = await run_cli(*wait_args(fake, ids, "--redis-url", url), timeout=20)
    assert run.code == 69
    assert f"127.0.0.1:{port}" in run.stderr and "cannot be reached" in run.stderr
    assert PASSWORD not in run.stderr + run.stdout
    assert run.stdout == ""
    assert fake.stats.total_requests == 0  # no replica silently alone


async def test_a_wrong_redis_password_exits_77_and_never_shows_a_password(
    fake: SimulatedQianfan,
) -> None:
    server = RedisServer(require_redis_server(), password=PASSWORD)
    server.start()
    try:
        ids = add_exports(fake, 3, spread=0.5)
        wrong = f"redis://:wrong-{PASSWORD[::-1]}@127.0.0.1:{server.port}/0"
        run = await run_cli(*wait_args(fake, ids, "--redis-url", wrong), timeout=20)
        assert run.code == 77
        assert f"127.0.0.1:{server.port}" in run.stderr and "credentials" in run.stderr
        assert PASSWORD[::-1] not in run.stderr + run.stdout
        assert fake.stats.total_requests == 0
        right = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        run = await run_cli(*wait_args(fake, ids, "--redis-url", right))
        assert run.code == 0 and len(run.records) == 3
        assert PASSWORD not in run.stderr + run.stdout
    finally:
        server.stop()


async def test_a_redis_url_of_another_scheme_is_a_usage_error_that_hides_its_password(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(*wait_args(fake, [1], "--redis-url", f"http://:{PASSWORD}@cache:6379"))
    assert run.code == 64
    assert "redis://" in run.stderr
    assert PASSWORD not in run.stderr
    assert fake.stats.total_requests == 0


async def test_a_redis_url_without_the_redis_package_is_a_usage_error_naming_the_extra(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    shadow = tmp_path / "redis"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('redis is not installed')\n")
    run = await run_cli(
        *wait_args(fake, [1], "--redis-url", "redis://127.0.0.1:6379/0"),
        env=cli_env(PYTHONPATH=str(tmp_path)),
    )
    assert run.code == 64
    assert "pip install 'qianfan-export-wait[redis]'" in run.stderr
    assert fake.stats.total_requests == 0
