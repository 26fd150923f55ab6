"""``qianfan_export_wait.sync``: from a plain script, from inside a running event loop (as
Jupyter runs cells), with Ctrl-C, and its progress with and without tqdm; against the
simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hardening_support import ACCESS_KEY, SECRET_KEY, cli_env

from qianfan_export_wait import (
    Credentials,
    ExportFailedError,
    ExportTimeoutError,
    OutcomeKind,
    sync,
)
from qianfan_export_wait.testing import SimulatedQianfan, fast_policy, simulated_qianfan_in_thread

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
FAST = fast_policy()


@pytest.fixture
def fake() -> Iterator[SimulatedQianfan]:
    """Exports 1-2 Done, 3 Fail, 4 held (Uploading) until a test completes it."""
    with simulated_qianfan_in_thread(credentials=CREDENTIALS) as running:
        running.add_export(0.0)
        running.add_export(0.0)
        running.add_export(0.0, fail=True)
        running.add_export(None, uploading_after=0.0)
        yield running


def test_the_three_calls_from_plain_code(fake: SimulatedQianfan) -> None:
    options = {"credentials": CREDENTIALS, "base_url": fake.base_url}
    report = sync.wait_all([1, 2, 3], policy=FAST, progress=False, **options)
    assert [report[i].kind for i in (1, 2, 3)] == [
        OutcomeKind.DONE,
        OutcomeKind.DONE,
        OutcomeKind.FAILED,
    ]
    assert sync.wait(1, policy=FAST, **options).state_name == "Done"
    with pytest.raises(ExportFailedError):
        sync.wait(3, policy=FAST, **options)
    with pytest.raises(ExportTimeoutError):
        sync.wait(4, policy=FAST, timeout=0.3, **options)
    assert sync.status(4, **options).state_name == "Uploading"


def test_wait_all_inside_a_running_loop_as_in_a_notebook(fake: SimulatedQianfan) -> None:
    threads_before = threading.active_count()

    async def cell() -> tuple[dict[int, OutcomeKind], str]:
        asyncio.get_running_loop()  # what Jupyter has while a cell runs
        fake.complete(4)
        report = sync.wait_all(
            [1, 2, 3, 4],
            policy=FAST,
            progress=False,
            credentials=CREDENTIALS,
            base_url=fake.base_url,
        )
        status = sync.status(2, credentials=CREDENTIALS, base_url=fake.base_url)
        return {i: report[i].kind for i in (1, 2, 3, 4)}, status.state_name

    kinds, state = asyncio.run(cell())
    assert kinds == {
        1: OutcomeKind.DONE,
        2: OutcomeKind.DONE,
        3: OutcomeKind.FAILED,
        4: OutcomeKind.DONE,
    }
    assert state == "Done"
    assert threading.active_count() == threads_before  # the call's thread has ended


def test_an_error_inside_a_running_loop_is_raised_to_the_caller(fake: SimulatedQianfan) -> None:
    async def cell() -> None:
        sync.wait(3, policy=FAST, credentials=CREDENTIALS, base_url=fake.base_url)

    with pytest.raises(ExportFailedError):
        asyncio.run(cell())


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_progress_goes_to_tqdm_when_installed_else_a_stderr_line(
    fake: SimulatedQianfan,
    tqdm_installed: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # type: ignore[arg-type]
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # type: ignore[arg-type]
    report = sync.wait_all(
        [1, 2, 3], policy=FAST, progress=True, credentials=CREDENTIALS, base_url=fake.base_url
    )
    assert len(report) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    if tqdm_installed:
        assert "3/3" in captured.err and "export" in captured.err
        assert "qianfan-export-wait:" not in captured.err
    else:
        assert captured.err.splitlines()[-1] == (
            "qianfan-export-wait: 3/3 exports finished (2 done, 1 failed)"
        )


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, threading
    from qianfan_export_wait import PollPolicy, sync

    policy = PollPolicy(min_delay=0.05, max_delay=0.1, timeout=None)

    def call():
        return sync.wait_all([1, 2, 3, 4], policy=policy, progress=False,
                             base_url=sys.argv[2])

    async def cell():
        return call()

    try:
        report = asyncio.run(cell()) if sys.argv[1] == "loop" else call()
    except KeyboardInterrupt:
        extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        print("interrupted", extra, flush=True)
        sys.exit(130)
    print({str(i): report[i].kind.value for i in (1, 2, 3, 4)}, flush=True)
    """
)


@contextlib.contextmanager
def run_script(fake: SimulatedQianfan, mode: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode, fake.base_url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        yield process
    finally:
        if process.poll() is None:  # a failed test leaves no script polling
            process.kill()
            process.communicate()


@pytest.mark.parametrize("mode", ["plain", "loop"])
def test_a_plain_script_and_a_running_loop_finish_when_the_exports_do(
    fake: SimulatedQianfan, mode: str
) -> None:
    with run_script(fake, mode) as process:
        polls_before = fake.stats.total_requests
        deadline = time.monotonic() + 20
        while fake.stats.total_requests < polls_before + 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.complete(4)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert json.loads(out.replace("'", '"')) == {
        "1": "done",
        "2": "done",
        "3": "failed",
        "4": "done",
    }


@pytest.mark.parametrize("mode", ["plain", "loop"])
def test_ctrl_c_cancels_the_wait_cleanly(fake: SimulatedQianfan, mode: str) -> None:
    with run_script(fake, mode) as process:
        deadline = time.monotonic() + 20
        while fake.stats.total_requests < 6 and time.monotonic() < deadline:
            time.sleep(0.05)  # the script is polling the held export
        assert fake.stats.total_requests >= 6
        os.kill(process.pid, signal.SIGINT)  # one Ctrl-C
        out, err = process.communicate(timeout=15)
    assert process.returncode == 130, (out, err)
    assert out.strip() == "interrupted []"  # no thread of the call is left
    for noise in ("Traceback", "Unclosed", "never awaited", "Task was destroyed"):
        assert noise not in err
    requests = fake.stats.total_requests
    time.sleep(0.3)
    assert fake.stats.total_requests == requests  # nothing polls any more


def test_an_error_in_a_plain_script_chains_to_no_loop_lookup(fake: SimulatedQianfan) -> None:
    """The traceback a script prints names the failure, not a 'no running event loop'
    the call looked up first."""
    with pytest.raises(ExportFailedError) as raised:
        sync.wait(3, policy=FAST, credentials=CREDENTIALS, base_url=fake.base_url)
    assert not isinstance(raised.value.__context__, RuntimeError)


def test_the_whole_job_from_a_notebook_cell(tmp_path: Path) -> None:
    # Wait for the evaluation, create its export, wait, download: one call, inside a loop.
    with simulated_qianfan_in_thread(credentials=CREDENTIALS) as running:
        evaluation = running.add_evaluation(finish_after=0.0)
        env = {"QIANFAN_BOS_ENDPOINT": running.base_url}

        async def cell() -> list[Any]:
            asyncio.get_running_loop()
            return sync.run_export_job(
                [evaluation.evaluation_id],
                credentials=CREDENTIALS,
                base_url=running.base_url,
                download_to=tmp_path,
                job_options={"policy": FAST, "journal": tmp_path / "creates.jsonl"},
            )

        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            [result] = asyncio.run(cell())
        creates = running.creates_by_evaluation()
    assert (result.outcome, result.stage) == ("done", "export"), result
    assert creates == {evaluation.evaluation_id: 1}
    assert result.file is not None and Path(result.file["path"]).is_file()
