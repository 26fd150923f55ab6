"""Cancellation and shutdown: SIGINT and SIGTERM during ``wait`` end the command within
3 s with exit 130 / 143, print every outcome already known and a ``pending`` line for
every other id, and leave no unclosed session or destroyed task behind (checked under
``PYTHONDEVMODE=1``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from hardening_support import ACCESS_KEY, CLI, SECRET_KEY, SHUTDOWN_WARNINGS, cli_env

from qianfan_export_wait import Credentials
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

SIGNALS = [
    pytest.param(signal.SIGINT, 130, id="SIGINT-130"),
    pytest.param(signal.SIGTERM, 143, id="SIGTERM-143"),
]
EXIT_BOUND_SECONDS = 3.0


async def interrupt_wait(
    fake: SimulatedQianfan, ids: list[int], signum: int, *, ready_after_lines: int
) -> tuple[int, float, list[dict[str, object]], str]:
    """Start ``wait``, let ``ready_after_lines`` lines appear (or, with 0, every id be
    polled once), send ``signum``; return exit code, seconds to exit, records, stderr."""
    process = await asyncio.create_subprocess_exec(
        *CLI, "wait", *map(str, ids), "--endpoint", fake.base_url,
        "--min-delay", "0.05", "--max-delay", "0.2", "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=cli_env(PYTHONDEVMODE="1", PYTHONWARNINGS="always"),
    )  # fmt: skip
    assert process.stdout is not None
    early: list[bytes] = []
    try:
        for _ in range(ready_after_lines):
            early.append(await asyncio.wait_for(process.stdout.readline(), 20))
        for _ in range(400):  # up to 20 s for every id to be polled once
            if len(fake.stats.polls_by_export) == len(ids):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a few polling rounds of the held exports
    except BaseException:
        process.kill()
        await process.wait()
        raise
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    elapsed = time.monotonic() - sent
    assert process.returncode is not None
    records = [json.loads(line) for line in (b"".join(early) + out).decode().splitlines()]
    return process.returncode, elapsed, records, err.decode()


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
async def test_signal_during_wait_exits_fast_with_its_code_after_printing_done_exports(
    signum: int, code: int
) -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    async with simulated_qianfan(credentials=credentials) as fake:
        fake.add_export(0.0)
        fake.add_export(0.0)
        fake.add_export(None)
        fake.add_export(None)
        exit_code, elapsed, records, stderr = await interrupt_wait(
            fake, [1, 2, 3, 4], signum, ready_after_lines=2
        )
    assert exit_code == code, stderr
    assert elapsed < EXIT_BOUND_SECONDS
    assert [(r["export_id"], r["outcome"]) for r in records] == [
        (1, "done"),
        (2, "done"),
        (3, "pending"),
        (4, "pending"),
    ]
    assert "interrupted" in stderr
    for warning in SHUTDOWN_WARNINGS:
        assert warning not in stderr


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
async def test_signal_prints_known_outcomes_that_were_waiting_behind_a_held_export(
    signum: int, code: int
) -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    async with simulated_qianfan(credentials=credentials) as fake:
        fake.add_export(None)  # 1: held, first in line, so nothing prints in order
        fake.add_export(0.0)
        fake.add_export(0.0, fail=True)
        fake.add_export(None)
        exit_code, elapsed, records, stderr = await interrupt_wait(
            fake, [1, 2, 3, 4], signum, ready_after_lines=0
        )
    assert exit_code == code, stderr
    assert elapsed < EXIT_BOUND_SECONDS
    assert [(r["export_id"], r["outcome"]) for r in records] == [
        (1, "pending"),
        (2, "done"),
        (3, "failed"),
        (4, "pending"),
    ]
    for warning in SHUTDOWN_WARNINGS:
        assert warning not in stderr


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
async def test_signal_takes_effect_within_3s_while_nobody_reads_stdout(
    signum: int, code: int
) -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    async with simulated_qianfan(credentials=credentials) as fake:
        done = [fake.add_export(0.0).export_id for _ in range(1000)]
        held = fake.add_export(None).export_id
        read_end, write_end = os.pipe()  # never read: 1000 lines fill it many times over
        try:
            process = await asyncio.create_subprocess_exec(
                *CLI, "wait", *map(str, [*done, held]), "--endpoint", fake.base_url,
                "--min-delay", "0.05", "--max-delay", "0.2",
                stdout=write_end, stderr=asyncio.subprocess.PIPE, env=cli_env(),
            )  # fmt: skip
            for _ in range(400):  # up to 20 s for every export to be answered once
                if len(fake.stats.polls_by_export) == len(done) + 1:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            sent = time.monotonic()
            process.send_signal(signum)
            try:
                _, err = await asyncio.wait_for(process.communicate(), 10)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            elapsed = time.monotonic() - sent
        finally:
            os.close(read_end)
            os.close(write_end)
    assert process.returncode == code, err.decode()
    assert elapsed < EXIT_BOUND_SECONDS
    assert "stdout did not take every line in time" in err.decode()
