"""``--format text``: aligned lines within 80 columns, safe from what the server sends, and
the command line's wait and status printing them (simulator on 127.0.0.1)."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hardening_support import ACCESS_KEY, SECRET_KEY, run_cli
from hypothesis import given
from hypothesis import strategies as st

from qianfan_export_wait import Credentials
from qianfan_export_wait.console.text import TEXT_HEADER, format_elapsed, text_line
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)


def column_starts(line: str) -> list[int]:
    return [i for i in range(1, len(line)) if line[i] != " " and line[i - 1] == " "]


def test_lines_align_under_the_header() -> None:
    records = [
        {"export_id": 96, "outcome": "done", "state": "Done", "polls": 4, "elapsed_s": 12.345,
         "file": {"path": "/data/export-96.zip", "bytes": 5, "sha256": "ab"}},
        {"export_id": "amemt-hkkf5y9e64j8", "outcome": "failed", "state": "Fail", "polls": 12,
         "elapsed_s": 61.0, "error": None},
        {"export_id": 9223372036854775807, "outcome": "timeout", "state": "Uploading",
         "polls": 130, "elapsed_s": 3725.0, "error": None},
    ]  # fmt: skip
    lines = [TEXT_HEADER, *(text_line(r) for r in records)]
    assert lines[1].split() == ["96", "done", "Done", "4", "12.3s", "/data/export-96.zip"]
    assert lines[2].split() == ["amemt-hkkf5y9e64j8", "failed", "Fail", "12", "1m01s"]
    assert lines[3].split() == ["9223372036854775807", "timeout", "Uploading", "130", "1h02m"]
    # Left-aligned columns start where their titles do; numbers end where theirs end.
    for title in ("OUTCOME", "STATE", "FILE / ERROR"):
        at = TEXT_HEADER.index(title)
        assert all(line[at - 1] == " " and line[at] != " " for line in lines[1:2]), title
    for title in ("POLLS", "ELAPSED"):
        end = TEXT_HEADER.index(title) + len(title) - 1
        assert all(line[end] != " " and line[end + 1 : end + 2] in ("", " ") for line in lines)
    assert all(columns(line) <= 80 for line in lines)


def test_errors_and_download_errors_fill_the_last_column() -> None:
    error = {"export_id": 5, "outcome": "error", "state": None, "polls": 1, "elapsed_s": 0.25,
             "error": {"code": 500001, "message": "unknown export id", "log_id": "L"}}  # fmt: skip
    assert text_line(error).split(None, 5) == [
        "5", "error", "-", "1", "0.2s", "500001: unknown export id",
    ]  # fmt: skip
    failed = {**error, "outcome": "done", "state": "Done", "error": None,
              "download_error": {"message": "checksum mismatch"}}  # fmt: skip
    assert text_line(failed).endswith("download: checksum mismatch")


def test_a_long_path_keeps_its_end_and_a_long_message_its_start() -> None:
    path = "/" + "/".join(["folder"] * 20) + "/export-96.zip"
    line = text_line({"export_id": 96, "outcome": "done", "state": "Done", "polls": 1,
                      "elapsed_s": 1.0, "file": {"path": path}})  # fmt: skip
    assert line.endswith("/export-96.zip") and "..." in line and len(line) == 80
    message = "the service said something long " * 5
    line = text_line({"export_id": 1, "outcome": "error", "polls": 1, "elapsed_s": 1.0,
                      "error": {"code": 2, "message": message}})  # fmt: skip
    assert "2: the service said" in line and line.endswith("...") and len(line) == 80


def test_nothing_from_the_server_can_drive_the_terminal() -> None:
    hostile = {"code": 2, "message": "a\rb\x07c\u202ed"}
    line = text_line({"export_id": 1, "outcome": "error", "state": "Do\x1b[2Jne\n", "polls": 1,
                      "elapsed_s": 1.0, "error": hostile})  # fmt: skip
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in line)
    assert "Do?[2Jne?" in line and "a?b?c?d" in line


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.04, "0.0s"), (59.94, "59.9s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"),
     (None, "-"), (float("nan"), "-")],
)  # fmt: skip
def test_elapsed_is_short(seconds: Any, shown: str) -> None:
    assert format_elapsed(seconds) == shown


text = st.text(st.characters(codec="utf-8"), max_size=120)


@given(
    export_id=st.one_of(st.integers(1, 2**63 - 1), text),
    outcome=text,
    state=st.one_of(st.none(), text),
    polls=st.integers(0, 10**12),
    elapsed=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)),
    message=text,
    path=text,
)
def test_any_record_fits_80_columns_on_one_line(
    export_id: Any, outcome: str, state: Any, polls: int, elapsed: Any, message: str, path: str
) -> None:
    for extra in ({"error": {"code": 1, "message": message}}, {"file": {"path": path or "x"}}):
        record = {"export_id": export_id, "outcome": outcome, "state": state, "polls": polls,
                  "elapsed_s": elapsed, **extra}  # fmt: skip
        line = text_line(record)
        assert columns(line) <= 80
        assert "\n" not in line and "\r" not in line


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(credentials=CREDENTIALS) as running:
        running.add_export(0.0)
        running.add_export(0.0, fail=True)
        yield running


async def test_wait_and_status_print_text_with_format_text(fake: SimulatedQianfan) -> None:
    for verb in ("wait", "status"):
        run = await run_cli(
            verb, "1", "2", "77", "--format", "text", "--endpoint", fake.base_url,
            *(("--min-delay", "0.05") if verb == "wait" else ()),
        )  # fmt: skip
        lines = run.stdout.splitlines()
        assert lines[0] == TEXT_HEADER, verb
        rows = [line.split(None, 5) for line in lines[1:]]
        assert [row[:3] for row in rows] == [
            ["1", "done", "Done"],
            ["2", "failed", "Fail"],
            ["77", "error", "-"],
        ], verb
        assert rows[2][5].startswith("500001: "), verb
        assert all(len(line) <= 80 for line in lines)
        assert run.code == 1  # the exit codes do not change with the format


async def test_json_lines_stay_the_default(fake: SimulatedQianfan) -> None:
    run = await run_cli("wait", "1", "--endpoint", fake.base_url)
    assert run.records[0]["outcome"] == "done"
    assert run.stdout.startswith("{")


async def test_the_header_is_not_counted_as_a_records_line() -> None:
    import io

    from qianfan_export_wait.console.records import json_line
    from qianfan_export_wait.console.text import TextLineWriter

    out = io.StringIO()
    writer = TextLineWriter(out).start()
    for export_id in (1, 2, 3):
        writer.write(json_line({"export_id": export_id, "outcome": "done", "state": "Done",
                                "polls": 1, "elapsed_s": 0.5}))  # fmt: skip
    assert await writer.drain()
    writer.close()
    assert out.getvalue().splitlines()[0] == TEXT_HEADER
    assert len(out.getvalue().splitlines()) == 4
    assert writer.written == 3  # what "N of M lines were not written" counts
