"""The ``qianfan-export-wait`` command line, run as a subprocess against a simulator on
127.0.0.1: JSON Lines on stdout, people's text on stderr, sysexits-style exit codes."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from hardening_support import (
    ACCESS_KEY,
    CLI,
    SECRET_KEY,
    CliRun,
    cli_env,
    run_cli,
)
from scripted_server import recording_server
from statuses import v1_body
from terminal_screen import FakeTerminal, screen

from qianfan_export_wait import Credentials
from qianfan_export_wait.cli import build_parser, main
from qianfan_export_wait.client import EXPORT_STATUS_PATH
from qianfan_export_wait.simulator import Simulator
from qianfan_export_wait.testing import SimulatedQianfan, serve_in_thread, simulated_qianfan
from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

RECORD_KEYS = {"export_id", "outcome", "state", "result", "error", "polls", "elapsed_s"}
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
FAST = ("--min-delay", "0.05", "--max-delay", "0.2")


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    """Exports 1-2 Done, 3 Fail, 4 held (Uploading) until the test says otherwise."""
    async with simulated_qianfan(credentials=CREDENTIALS) as running:
        running.add_export(0.0)
        running.add_export(0.0)
        running.add_export(0.0, fail=True)
        running.add_export(None, uploading_after=0.0)
        yield running


async def wait_cli(fake: SimulatedQianfan, *args: str, **options: object) -> tuple[int, list]:  # type: ignore[type-arg]
    run = await run_cli("wait", *args, "--endpoint", fake.base_url, *FAST, **options)  # type: ignore[arg-type]
    return run.code, run.records


async def start_cli(
    *args: str, stdout: Any = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """The command line as a running process (stdout: a pipe to read, or a file given)."""
    return await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
        stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )  # fmt: skip


# --- status ---------------------------------------------------------------------------------


async def test_status_prints_one_json_object_per_id_with_the_documented_keys(
    fake: SimulatedQianfan,
) -> None:
    text_id = fake.simulator.export(2).export_id_str
    run = await run_cli("status", "1", text_id, "3", "4", "--endpoint", fake.base_url)
    lines = run.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict)
        assert set(record) == RECORD_KEYS
    assert [(r["export_id"], r["outcome"], r["state"]) for r in run.records] == [
        (1, "done", "Done"),
        (text_id, "done", "Done"),
        (3, "failed", "Fail"),
        (4, "pending", "Uploading"),
    ]
    assert run.records[0]["result"]["exportID"] == 1
    assert run.records[0]["error"] is None
    assert run.records[0]["polls"] == 1


async def test_status_sends_digits_as_an_int_and_anything_else_as_a_string() -> None:
    async with recording_server() as server:
        run = await run_cli(
            "status", "96", "amemt-hkkf5y9e64j8", "96a", "--endpoint", server.base_url
        )
    sent = [json.loads(received.body)["exportID"] for received in server.requests]
    assert sent == [96, "amemt-hkkf5y9e64j8", "96a"]
    assert [type(value) for value in sent] == [int, str, str]
    assert [record["export_id"] for record in run.records] == [96, "amemt-hkkf5y9e64j8", "96a"]


async def test_status_of_done_exports_exits_0(fake: SimulatedQianfan) -> None:
    run = await run_cli("status", "1", "2", "--endpoint", fake.base_url)
    assert run.code == 0


async def test_status_of_a_still_running_export_exits_0(fake: SimulatedQianfan) -> None:
    run = await run_cli("status", "4", "--endpoint", fake.base_url)
    assert (run.code, run.records[0]["outcome"]) == (0, "pending")


async def test_status_with_a_failed_export_exits_1(fake: SimulatedQianfan) -> None:
    run = await run_cli("status", "1", "3", "--endpoint", fake.base_url)
    assert run.code == 1


async def test_status_of_an_unknown_id_prints_an_error_line_and_exits_1(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli("status", "1", "777", "--endpoint", fake.base_url)
    assert run.code == 1
    unknown = run.records[1]
    assert (unknown["outcome"], unknown["state"], unknown["result"]) == ("error", None, None)
    assert unknown["error"]["code"] == 500001
    assert set(unknown["error"]) == {"code", "message", "log_id"}


async def test_status_with_wrong_credentials_exits_77_giving_every_id_a_line_after_one_request(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(
        "status", "1", "2", "3", "--endpoint", fake.base_url, env=cli_env(secret_key="wrong")
    )
    assert run.code == 77
    assert [(r["export_id"], r["outcome"]) for r in run.records] == [
        (1, "error"),
        (2, "error"),
        (3, "error"),
    ]
    assert len({r["error"]["message"] for r in run.records}) == 1
    assert fake.stats.total_requests == 1
    assert "authentication failed" in run.stderr


# --- wait -----------------------------------------------------------------------------------


async def test_wait_prints_lines_in_input_order_not_finishing_order() -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as fake:
        for finish_after in (0.6, 0.4, 0.2, 0.0):
            fake.add_export(finish_after)
        code, records = await wait_cli(fake, "1", "2", "3", "4")
        finished_first = min(fake.simulator.exports.values(), key=lambda e: e.finish_at)
    assert finished_first.export_id == 4
    assert code == 0
    assert [record["export_id"] for record in records] == [1, 2, 3, 4]
    assert all(record["outcome"] == "done" for record in records)


async def test_wait_with_every_export_done_exits_0(fake: SimulatedQianfan) -> None:
    code, records = await wait_cli(fake, "2", "1")
    assert code == 0
    assert [(r["export_id"], r["outcome"]) for r in records] == [(2, "done"), (1, "done")]


async def test_wait_with_a_failed_export_exits_1(fake: SimulatedQianfan) -> None:
    code, records = await wait_cli(fake, "1", "3")
    assert code == 1
    assert [r["outcome"] for r in records] == ["done", "failed"]
    assert records[1]["state"] == "Fail"


async def test_wait_with_an_unknown_id_exits_1_with_an_error_line(
    fake: SimulatedQianfan,
) -> None:
    code, records = await wait_cli(fake, "1", "amemt-000000000000")
    assert code == 1
    assert [r["outcome"] for r in records] == ["done", "error"]
    assert records[1]["error"]["code"] == 500001


async def test_wait_with_a_timeout_exits_2_even_when_another_failed(
    fake: SimulatedQianfan,
) -> None:
    code, records = await wait_cli(fake, "1", "3", "4", "--timeout", "0.5")
    assert code == 2
    assert [r["outcome"] for r in records] == ["done", "failed", "timeout"]
    assert records[2]["state"] == "Uploading"
    assert records[2]["polls"] >= 2


async def test_wait_with_wrong_credentials_exits_77_and_gives_every_id_a_line(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(
        "wait", "1", "2", "3", "--endpoint", fake.base_url, env=cli_env(secret_key="wrong")
    )
    assert run.code == 77
    assert [(r["export_id"], r["outcome"]) for r in run.records] == [
        (1, "error"),
        (2, "error"),
        (3, "error"),
    ]
    assert fake.stats.requests_by_outcome["auth_failed"] == 1


async def test_wait_exits_69_when_the_service_stays_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    run = await run_cli("wait", "1", "2", "--endpoint", closed, *FAST, "--max-unavailable", "1.5")
    assert run.code == 69, run.stderr
    assert [(r["export_id"], r["outcome"]) for r in run.records] == [(1, "error"), (2, "error")]
    assert "gave up after" in run.records[0]["error"]["message"]
    assert "not answering" in run.stderr


async def test_wait_reads_ids_from_stdin_with_ids_file_dash(fake: SimulatedQianfan) -> None:
    code, records = await wait_cli(fake, "--ids-file", "-", stdin="# from a pipe\n2\n\n1\n")
    assert code == 0
    assert [r["export_id"] for r in records] == [2, 1]


async def test_wait_takes_ids_from_arguments_and_file_together_once_each(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("2\n1\n", encoding="utf-8")
    code, records = await wait_cli(fake, "1", "1", "--ids-file", str(ids_file))
    assert code == 0
    assert [r["export_id"] for r in records] == [1, 2]


async def test_wait_stdout_stays_pure_json_lines_at_verbose(fake: SimulatedQianfan) -> None:
    run = await run_cli("wait", "1", "3", "777", "--endpoint", fake.base_url, *FAST, "--verbose")
    assert [json.loads(line)["export_id"] for line in run.stdout.splitlines()] == [1, 3, 777]
    assert "DEBUG" in run.stderr
    assert "DEBUG" not in run.stdout


async def test_wait_order_completion_prints_each_line_as_its_export_finishes(
    fake: SimulatedQianfan,
) -> None:
    process = await start_cli(
        "wait", "4", "1", "--order", "completion", "--endpoint", fake.base_url, *FAST
    )
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
    assert (first["export_id"], first["outcome"]) == (1, "done")  # while 4 is still held
    fake.complete(4)
    rest, _ = await asyncio.wait_for(process.communicate(), 20)
    assert [json.loads(line)["export_id"] for line in rest.splitlines()] == [4]
    assert process.returncode == 0


async def test_wait_order_input_holds_later_lines_behind_an_earlier_export(
    fake: SimulatedQianfan,
) -> None:
    process = await start_cli("wait", "4", "1", "--endpoint", fake.base_url, *FAST)
    assert process.stdout is not None
    for _ in range(400):  # until 1 is Done and 4 polled more than once
        if fake.stats.polls_by_export.get(4, 0) >= 2 and fake.stats.polls_by_export.get(1):
            break
        await asyncio.sleep(0.05)
    fake.complete(4)
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    assert [json.loads(line)["export_id"] for line in out.splitlines()] == [4, 1]


# --- output that never breaks ---------------------------------------------------------------


def strict_records(stdout: str) -> list[dict[str, Any]]:
    """stdout as RFC 8259 JSON lines: NaN and Infinity are refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in stdout.splitlines()]


def answering(shape: Callable[[int], str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A status handler whose body for export N is the text ``shape(N)``."""

    async def answer(request: web.Request) -> web.Response:
        export_id = json.loads(await request.read())["exportID"]
        return web.Response(text=shape(export_id), content_type="application/json")

    return answer


async def test_a_lone_surrogate_from_the_server_is_printed_escaped_and_every_id_gets_a_line() -> (
    None
):
    def shape(export_id: int) -> str:
        odd = "\ud800" if export_id == 5 else "plain"
        return json.dumps(
            v1_body(export_id, documented=True, exportPath=odd)
        )  # ensure_ascii: "\\ud800"

    async with recording_server(answering(shape)) as server:
        ids = [str(n) for n in range(1, 10)]
        run = await run_cli("wait", *ids, "--endpoint", server.base_url, *FAST)
    assert run.code == 0, run.stderr
    records = strict_records(run.stdout)
    assert [r["export_id"] for r in records] == list(range(1, 10))
    assert records[4]["result"]["exportPath"] == "\ud800"


async def test_chinese_text_prints_when_stdout_is_not_utf8() -> None:
    path = "评估/结果.csv"

    def shape(export_id: int) -> str:
        return json.dumps(v1_body(export_id, documented=True, exportPath=path), ensure_ascii=False)

    async with recording_server(answering(shape)) as server:
        run = await run_cli(
            "wait", "1", "2", "--endpoint", server.base_url, *FAST,
            env=cli_env(PYTHONIOENCODING="cp1252"),
        )  # fmt: skip
    assert run.code == 0, run.stderr
    assert [r["result"]["exportPath"] for r in strict_records(run.stdout)] == [path, path]


async def test_non_finite_numbers_from_the_server_are_printed_as_null() -> None:
    def shape(export_id: int) -> str:
        body = json.dumps(v1_body(export_id, documented=True, score=0.5, rank=1))
        return body.replace("0.5", "NaN").replace('"rank": 1', '"rank": 1e400')

    async with recording_server(answering(shape)) as server:
        run = await run_cli("wait", "7", "--endpoint", server.base_url, *FAST)
    assert run.code == 0, run.stderr
    [record] = strict_records(run.stdout)
    assert (record["result"]["score"], record["result"]["rank"]) == (None, None)


async def test_a_reader_that_closes_stdout_ends_the_run_quietly_with_141() -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as fake:
        fake.add_export(0.0)
        fake.add_export(None)
        read_end, write_end = os.pipe()
        process = await start_cli(
            "wait", "1", "2", "--endpoint", fake.base_url, *FAST, stdout=write_end
        )
        os.close(write_end)
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.run_in_executor(None, os.read, read_end, 1 << 16), 20)
        os.close(read_end)  # as `| head -1` does after its line
        assert json.loads(first.splitlines()[0])["export_id"] == 1
        fake.complete(2)  # its line meets the closed pipe
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 141
    assert err == b""


async def test_a_stdout_that_cannot_be_written_exits_74_naming_the_error(
    fake: SimulatedQianfan,
) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = await start_cli("wait", "1", "--endpoint", fake.base_url, *FAST, stdout=full)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        os.close(full)
    assert process.returncode == 74
    assert "cannot write to stdout" in err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.parametrize("verb", ["wait", "status"])
@pytest.mark.parametrize("how", ["closed", "read-only"])
async def test_a_stdout_not_writable_at_start_exits_74_before_any_request(
    fake: SimulatedQianfan, tmp_path: Path, verb: str, how: str
) -> None:
    fake.add_export(0.0)
    command = [*CLI, verb, "1", "--endpoint", fake.base_url, *(FAST if verb == "wait" else ())]
    if how == "closed":  # `>&-`: the process starts with no fd 1 at all
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", '"$@" >&-', "sh", *command,
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=cli_env(),
        )  # fmt: skip
    else:  # fd 1 open for reading only: every write fails with EBADF
        (tmp_path / "out").write_bytes(b"")
        read_only = os.open(tmp_path / "out", os.O_RDONLY)
        try:
            process = await start_cli(*command[len(CLI) :], stdout=read_only)
        finally:
            os.close(read_only)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    text = err.decode()
    assert process.returncode == 74, text
    assert "stdout" in text and "not writable" in text
    assert "Traceback" not in text
    assert fake.stats.total_requests == 0


# --- --resume -------------------------------------------------------------------------------


def write_lines(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


async def test_resume_prints_earlier_done_and_failed_lines_unasked_and_waits_for_the_rest(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    done = {"export_id": 1, "outcome": "done", "state": "Done", "polls": 9, "mark": "earlier"}
    failed = {"export_id": 3, "outcome": "failed", "state": "Fail", "polls": 2}
    pending = {"export_id": 2, "outcome": "pending", "state": "Uploading"}
    earlier = write_lines(tmp_path / "earlier.jsonl", done, pending, failed)
    run = await run_cli("wait", "--resume", str(earlier), "--endpoint", fake.base_url, *FAST)
    assert run.code == 1, run.stderr  # export 3 failed, as before
    assert run.records[0] == done
    assert run.records[2] == failed
    assert (run.records[1]["export_id"], run.records[1]["outcome"]) == (2, "done")
    assert set(fake.stats.polls_by_export) == {2}


async def test_resume_with_ids_waits_for_exactly_those_ids(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    earlier = write_lines(
        tmp_path / "earlier.jsonl",
        {"export_id": 1, "outcome": "done", "state": "Done"},
        {"export_id": 3, "outcome": "failed", "state": "Fail"},
    )
    run = await run_cli(
        "wait", "2", "1", "--resume", str(earlier), "--endpoint", fake.base_url, *FAST
    )
    assert run.code == 0, run.stderr
    assert [(r["export_id"], r["outcome"]) for r in run.records] == [(2, "done"), (1, "done")]
    assert set(fake.stats.polls_by_export) == {2}


async def test_an_interrupted_wait_resumed_from_its_output_waits_only_for_what_was_pending(
    tmp_path: Path,
) -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as fake:
        fake.add_export(0.0)
        fake.add_export(None)
        process = await start_cli("wait", "1", "2", "--endpoint", fake.base_url, *FAST)
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), 20)
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 20)
        first_run = tmp_path / "first.jsonl"
        first_run.write_bytes(
            json.dumps({"export_id": 1, "outcome": "done"}).encode() + b"\n" + rest
        )
        fake.complete(2)
        fake.simulator.reset_stats()
        run = await run_cli("wait", "--resume", str(first_run), "--endpoint", fake.base_url, *FAST)
        asked = set(fake.stats.polls_by_export)
    assert process.returncode == 130
    assert [(r["export_id"], r["outcome"]) for r in run.records] == [(1, "done"), (2, "done")]
    assert asked == {2}


async def test_a_signal_while_earlier_records_print_still_gives_every_id_one_line(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    # Earlier records are printed as fast as stdout takes them; nobody reads stdout here,
    # so SIGTERM lands while they print. Every id still gets exactly one line.
    count = 20_000
    earlier = tmp_path / "earlier.jsonl"
    lines = [record_line(n, "done" if n != 7 else "pending") for n in range(1, count + 1)]
    earlier.write_text("".join(lines), encoding="utf-8")
    process = await start_cli(
        "wait", "--resume", str(earlier), "--order", "completion", "--endpoint", fake.base_url
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 20)  # printing has begun
    await asyncio.sleep(0.3)  # the pipe stays full: the rest cannot be printed yet
    process.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    records = [json.loads(line) for line in (first + out).splitlines()]
    assert process.returncode == 143
    assert sorted(r["export_id"] for r in records) == list(range(1, count + 1))
    assert fake.stats.total_requests == 0  # the signal came before export 7 was asked
    assert all((r["outcome"] == "pending") == (r["export_id"] == 7) for r in records)


def record_line(export_id: int, outcome: str) -> str:
    return json.dumps({"export_id": export_id, "outcome": outcome, "pad": "p" * 200}) + "\n"


async def test_resume_from_a_file_with_a_bad_line_exits_64_naming_it(
    fake: SimulatedQianfan, tmp_path: Path
) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text('{"export_id": 1, "outcome": "done"}\nnot json\n{}\n', encoding="utf-8")
    run = await run_cli("wait", "--resume", str(earlier), "--endpoint", fake.base_url)
    assert run.code == 64
    assert f"--resume {earlier}:2" in run.stderr
    assert fake.stats.total_requests == 0


# --- --download -----------------------------------------------------------------------------


def sha256_of(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def is_folder(path: str) -> bool:
    return Path(path).is_dir()


async def download_run(
    folder: Path, export_types: tuple[str, ...], *, bos_endpoint_by: str
) -> tuple[CliRun, dict[int, Any]]:
    """``wait 1..n --download folder`` against a simulator with one export of each type
    (ids from 1), storage files served by the simulator too, its address given by the
    ``--bos-endpoint`` flag (``"flag"``) or by ``QIANFAN_BOS_ENDPOINT`` (``"env"``); the run
    and each export's file digest."""
    async with simulated_qianfan(credentials=CREDENTIALS, file_sizes=(3000, 9000)) as fake:
        for export_type in export_types:
            fake.add_export(0.0, export_type=export_type)
        env = {k: v for k, v in cli_env().items() if k != "QIANFAN_BOS_ENDPOINT"}
        flags: list[str] = []
        if bos_endpoint_by == "flag":
            flags = ["--bos-endpoint", fake.base_url]
        else:
            env["QIANFAN_BOS_ENDPOINT"] = fake.base_url
        ids = range(1, len(export_types) + 1)
        run = await run_cli(
            "wait", *map(str, ids), "--download", str(folder), "--endpoint", fake.base_url,
            *flags, *FAST, env=env,
        )  # fmt: skip
        digests = {n: fake.simulator.file_of(n).digest() for n in ids}
    return run, digests


async def test_download_adds_each_verified_file_to_its_line(tmp_path: Path) -> None:
    run, digests = await download_run(
        tmp_path, ("local", "local", "local", "storage"), bos_endpoint_by="env"
    )
    assert run.code == 0, run.stderr
    for record in run.records:
        file = record["file"]
        assert record["outcome"] == "done"
        assert set(file) == {"path", "bytes", "sha256"}
        assert sha256_of(file["path"]) == file["sha256"]
        assert (file["bytes"], file["sha256"]) == (
            digests[record["export_id"]].size,
            digests[record["export_id"]].sha256_hex,
        )
    assert "4 files" in run.stderr


def forge(records: list[dict[str, Any]], outside: Path) -> dict[int, dict[str, Any]]:
    """1: untouched. 2: names a copy outside the folder (same bytes). 3: deleted since.
    4: a sha256 that is not the file's. 5: the file swapped for a link to a copy."""
    by_id = {record["export_id"]: record for record in records}
    for n in (2, 5):
        (outside / f"copy-{n}").write_bytes(Path(by_id[n]["file"]["path"]).read_bytes())
    by_id[2]["file"]["path"] = str(outside / "copy-2")
    Path(by_id[3]["file"]["path"]).unlink()
    by_id[4]["file"]["sha256"] = "0" * 64
    five = Path(by_id[5]["file"]["path"])
    five.unlink()
    five.symlink_to(outside / "copy-5")
    return by_id


def in_folder_and_true(file: dict[str, Any], folder: Path) -> bool:
    path = Path(file["path"])
    inside = folder.resolve() in path.resolve().parents and not path.is_symlink()
    return inside and sha256_of(str(path)) == file["sha256"]


async def test_resume_with_download_takes_a_done_record_only_for_its_file_in_place(
    tmp_path: Path,
) -> None:
    folder, outside = tmp_path / "files", tmp_path / "outside"
    outside.mkdir()
    async with simulated_qianfan(credentials=CREDENTIALS, file_sizes=(3000, 9000)) as fake:
        for _ in range(5):
            fake.add_export(0.0, export_type="local")
        ids = ["1", "2", "3", "4", "5"]
        common = ["--download", str(folder), "--endpoint", fake.base_url, *FAST]
        first = await run_cli("wait", *ids, *common)
        assert first.code == 0, first.stderr
        records = forge(first.records, outside)
        earlier = write_lines(tmp_path / "earlier.jsonl", *records.values())
        outside_bytes = (outside / "copy-5").read_bytes()
        fake.stats.reset()
        second = await run_cli("wait", "--resume", str(earlier), *common)
        polled = set(fake.stats.polls_by_export)
    assert polled == {2, 3, 4, 5}  # only the genuine record was taken as it was
    assert second.records[0] == records[1]
    by_id = {record["export_id"]: record for record in second.records}
    for n in (1, 2, 3, 4):
        assert in_folder_and_true(by_id[n]["file"], folder)
    # 5's file was swapped for a link: the downloader never writes through it, so that
    # export is done without a file, the run exits 1, and the outside file is untouched.
    assert "file" not in by_id[5] and by_id[5]["download_error"]
    assert second.code == 1, second.stderr
    assert (outside / "copy-5").read_bytes() == outside_bytes


async def test_download_with_extract_unpacks_zip_files(tmp_path: Path) -> None:
    async with simulated_qianfan(credentials=CREDENTIALS, file_sizes=(3000, 9000)) as fake:
        zips = []
        while len(zips) < 1:  # file kinds are seeded per export: take the first zip
            export = fake.add_export(0.0, export_type="local")
            if fake.simulator.file_of(export.export_id).kind == "zip":
                zips.append(str(export.export_id))
        run = await run_cli(
            "wait", *zips, "--download", str(tmp_path), "--extract", "--endpoint", fake.base_url,
            *FAST,
        )  # fmt: skip
    assert run.code == 0, run.stderr
    [record] = run.records
    assert is_folder(record["file"]["extracted_to"])


async def test_a_failed_download_keeps_the_outcome_done_exits_1_and_names_the_export(
    tmp_path: Path,
) -> None:
    base_url: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        if request.path != EXPORT_STATUS_PATH:
            return web.Response(status=404, text="no such file")
        export_id = json.loads(await request.read())["exportID"]
        body = v1_body(
            export_id, documented=True, exportType="local", url=f"{base_url[0]}/f/{export_id}.csv"
        )
        return web.json_response(body)

    async with recording_server(answer) as server:
        base_url.append(server.base_url)
        run = await run_cli(
            "wait", "96", "--download", str(tmp_path), "--endpoint", server.base_url, *FAST
        )
    assert run.code == 1
    [record] = run.records
    assert record["outcome"] == "done"
    assert record["download_error"]["http_status"] == 404
    assert "file" not in record
    assert "download of export 96 failed" in run.stderr


async def test_a_refused_link_is_refreshed_through_the_waiter_so_its_poll_is_counted(
    tmp_path: Path,
) -> None:
    # The refresh used to call client.get_status, outside the waiter's rate and fleet
    # limits: the server saw 2 status requests while the run's count said 1.
    base_url: list[str] = []
    gets: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        if request.path != EXPORT_STATUS_PATH:
            gets.append(request.path)
            if len(gets) == 1:
                return web.Response(status=403, text="link refused")
            return web.Response(body=b"a,b\n1,2\n")
        export_id = json.loads(await request.read())["exportID"]
        body = v1_body(
            export_id, documented=True, exportType="local", url=f"{base_url[0]}/f/{export_id}.csv"
        )
        return web.json_response(body)

    async with recording_server(answer) as server:
        base_url.append(server.base_url)
        run = await run_cli(
            "wait", "96", "--download", str(tmp_path), "--endpoint", server.base_url, *FAST
        )
        polls = sum(1 for request in server.requests if request.path == EXPORT_STATUS_PATH)
    assert run.code == 0, run.stderr
    [record] = run.records
    assert record["file"]["bytes"] == 8
    assert (polls, len(gets)) == (2, 2)
    assert "2 requests" in run.stderr


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--extract"], "--extract and --download-concurrency need --download"),
        (["--download-concurrency", "2"], "need --download DIR"),
        (["--download", "/dev/null/x"], "--download '/dev/null/x'"),
    ],
)
async def test_download_options_are_checked_before_any_request(
    fake: SimulatedQianfan, option: list[str], named: str
) -> None:
    run = await run_cli("wait", "1", *option, "--endpoint", fake.base_url)
    assert run.code == 64
    assert named in run.stderr
    assert fake.stats.total_requests == 0


# --- stderr: progress, summary, --quiet -----------------------------------------------------


async def test_without_a_terminal_stderr_gets_only_the_one_line_summary(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli("wait", "1", "3", "--endpoint", fake.base_url, *FAST)
    assert run.code == 1
    [summary] = run.stderr.splitlines()
    assert summary.startswith("qianfan-export-wait: 2 exports in ")
    assert "1 done, 1 failed, 0 errors, 0 timed out" in summary
    assert "\r" not in run.stderr


async def test_quiet_prints_nothing_on_stderr_but_errors(fake: SimulatedQianfan) -> None:
    run = await run_cli("wait", "1", "2", "--quiet", "--endpoint", fake.base_url, *FAST)
    assert (run.code, run.stderr) == (0, "")
    wrong = await run_cli(
        "wait", "1", "--quiet", "--endpoint", fake.base_url, env=cli_env(secret_key="wrong")
    )
    assert wrong.code == 77
    assert "authentication failed" in wrong.stderr


def test_on_one_terminal_the_lines_print_above_the_bar_and_the_screen_ends_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    simulator = Simulator(CREDENTIALS)
    for finish_after in (0.0, 0.4, 0.8):
        simulator.add_export(finish_after)
    terminal = FakeTerminal()  # stdout and stderr: one screen
    for name, value in cli_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setattr("sys.stderr", terminal)
    with serve_in_thread(simulator) as base_url:
        code = main(["wait", "1", "2", "3", "--order", "completion", "--endpoint", base_url, *FAST])
    assert code == 0
    shown = [line for line in screen(terminal.getvalue()) if line]
    assert "req/s" in terminal.getvalue()  # the bar was drawn
    assert [json.loads(line)["export_id"] for line in shown[:3]] == [1, 2, 3]
    summary = " ".join(line.strip() for line in shown[3:])  # wrapped at 80 columns
    assert summary.startswith("qianfan-export-wait: 3 exports in ")
    assert summary.endswith(" throttled")  # no bar left behind
    assert all(len(line) < 80 and "req/s" not in line for line in shown[3:])


# --- demo, help, usage ----------------------------------------------------------------------


async def test_demo_with_sixty_exports_exits_0_and_prints_the_summary_table() -> None:
    run = await run_cli("demo", "--exports", "60", "--no-progress", env=cli_env(None, None))
    assert run.code == 0, run
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["outcome", "seen", "truth"]
    rows = {line[:22].strip(): line[22:].split() for line in lines[1:5]}
    assert set(rows) == {"done", "failed", "errors (unknown ids)", "timed out"}
    assert all(seen == truth for seen, truth in rows.values())
    assert sum(int(rows[name][0]) for name in ("done", "failed")) == 60
    assert "simulator on http://127.0.0.1:" in run.stderr


@pytest.mark.parametrize("verb", [[], ["status"], ["wait"], ["demo"], ["simulate"]])
def test_help_works_for_every_verb(verb: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*verb, "--help"])
    assert caught.value.code == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("usage: qianfan-export-wait")
    assert printed.err == ""


def _verb_parsers() -> dict[str, argparse.ArgumentParser]:
    [verbs] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    return dict(verbs.choices)


@pytest.mark.parametrize("verb", ["status", "wait", "demo", "simulate"])
def test_every_option_of_every_verb_has_help_text_with_its_default(verb: str) -> None:
    parser = _verb_parsers()[verb]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help, action.option_strings
        assert "default" in action.help, action.option_strings


def test_wait_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["wait", "--help"])
    shown = capsys.readouterr().out
    for code in (0, 1, 2, 64, 69, 74, 77, 130, 141, 143):
        assert f"\n  {code} " in shown, code
    assert "SSL_CERT_FILE" in shown


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("qianfan-export-wait ")


@pytest.mark.parametrize(
    "argv", [[], ["fetch"], ["status"], ["wait", "1", "--no-such-option"]], ids=str
)
def test_bad_usage_exits_64(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 64
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "usage:" in printed.err


def test_simulate_with_a_port_out_of_range_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--port", "70000"])
    assert caught.value.code == 64
    assert "--port must be an int from 0 to 65535" in capsys.readouterr().err


async def test_simulate_on_a_port_in_use_exits_1_with_a_clear_message(
    fake: SimulatedQianfan,
) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    run = await run_cli("simulate", "--port", port, env=cli_env(None, None), timeout=20)
    assert run.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr


def test_wait_defaults_are_the_librarys() -> None:
    args = build_parser().parse_args(["wait", "1"])
    policy = PollPolicy()
    in_flight = inspect.signature(ExportWaiter).parameters["max_in_flight"].default
    assert (
        args.min_delay,
        args.max_delay,
        args.timeout,
        args.max_in_flight,
        args.max_unavailable,
    ) == (policy.min_delay, policy.max_delay, policy.timeout, in_flight, policy.max_unavailable)


def _has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


@pytest.mark.skipif(_has_uvloop(), reason="uvloop is installed here")
async def test_event_loop_uvloop_without_uvloop_is_bad_usage_naming_the_extra(
    fake: SimulatedQianfan,
) -> None:
    code, _ = await wait_cli(fake, "1", "--event-loop", "uvloop")
    run = await run_cli("wait", "1", "--endpoint", fake.base_url, "--event-loop", "uvloop")
    assert code == run.code == 64
    assert "qianfan-export-wait[fast]" in run.stderr


@pytest.mark.skipif(not _has_uvloop(), reason="uvloop is not installed here")
async def test_event_loop_uvloop_runs_the_wait_on_uvloop(fake: SimulatedQianfan) -> None:
    for choice, module in (("uvloop", "uvloop"), ("asyncio", "asyncio"), ("auto", "uvloop")):
        run = await run_cli(
            "wait", "1", "2", "--endpoint", fake.base_url, *FAST, "-v", "--event-loop", choice
        )
        assert run.code == 0 and [r["outcome"] for r in run.records] == ["done", "done"]
        assert f"event loop: {module}." in run.stderr, (choice, run.stderr[-500:])


async def test_bos_endpoint_flag_points_storage_downloads_at_the_simulator(tmp_path: Path) -> None:
    # The banner's advice, as a flag: no variable needed for storage files.
    run, digests = await download_run(tmp_path, ("storage",), bos_endpoint_by="flag")
    assert run.code == 0, run.stderr
    (record,) = run.records
    assert record["file"]["sha256"] == digests[1].sha256_hex
    assert "1 export in " in run.stderr and "1 file," in run.stderr
