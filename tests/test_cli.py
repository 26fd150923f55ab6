"""The ``qianfan-export-wait`` command line, run as a subprocess against a simulator on
127.0.0.1: JSON Lines on stdout, people's text on stderr, sysexits-style exit codes."""

from __future__ import annotations

import inspect
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hardening_support import (
    ACCESS_KEY,
    SECRET_KEY,
    cli_env,
    recording_server,
    run_cli,
)

from qianfan_export_wait import Credentials
from qianfan_export_wait.cli import OrderedPrinter, build_parser, main
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
    sent = [json.loads(received["body"])["exportID"] for received in server.received]
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


async def test_status_with_wrong_credentials_exits_77_after_the_first_id(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli(
        "status", "1", "2", "3", "--endpoint", fake.base_url, env=cli_env(secret_key="wrong")
    )
    assert run.code == 77
    assert len(run.records) == 1
    assert run.records[0]["outcome"] == "error"
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


async def test_progress_is_not_drawn_when_stderr_is_not_a_terminal(
    fake: SimulatedQianfan,
) -> None:
    run = await run_cli("wait", "1", "2", "--endpoint", fake.base_url, *FAST)
    assert run.code == 0
    assert run.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_and_stdout_stays_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    simulator = Simulator(CREDENTIALS)
    for finish_after in (0.0, 0.5, 0.8):
        simulator.add_export(finish_after)
    stdout, stderr = io.StringIO(), _Terminal()
    for name, value in cli_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stderr", stderr)
    with serve_in_thread(simulator) as base_url:
        code = main(["wait", "1", "2", "3", "--endpoint", base_url, *FAST])
    assert code == 0
    assert [json.loads(line)["export_id"] for line in stdout.getvalue().splitlines()] == [1, 2, 3]
    assert "waiting" in stderr.getvalue()
    assert "waiting" not in stdout.getvalue()


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
    assert "--port must be within 0-65535" in capsys.readouterr().err


async def test_simulate_on_a_port_in_use_exits_1_with_a_clear_message(
    fake: SimulatedQianfan,
) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    run = await run_cli("simulate", "--port", port, env=cli_env(None, None), timeout=20)
    assert run.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "ids",
    [
        [905, 3, 2**63 - 1, 17, 1],  # all numbers: the sorted-array index
        [905, "amemt-hkkf5y9e64j8", 3, "905", 17],  # mixed: the dict index
    ],
    ids=["ints", "mixed"],
)
def test_ordered_printer_prints_in_the_callers_order_as_soon_as_it_can(
    ids: list[int | str],
) -> None:
    out = io.StringIO()
    printer = OrderedPrinter(ids, out)
    finishing = [ids[2], ids[0], ids[4], ids[1]]  # the fourth id is still pending
    printed = []
    for export_id in finishing:
        printer.add(export_id, f"line {export_id}")
        printed.append(out.getvalue().splitlines())
    assert printed == [
        [],
        [f"line {ids[0]}"],
        [f"line {ids[0]}"],
        [f"line {ids[0]}", f"line {ids[1]}", f"line {ids[2]}"],
    ]
    printer.flush_known()  # an interruption: what is known goes out, still in order
    assert out.getvalue().splitlines() == [f"line {i}" for i in (ids[0], ids[1], ids[2], ids[4])]


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
