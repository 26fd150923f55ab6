"""``console.inputs``: ids from arguments and ``--ids-file``, and an earlier run's lines for
``--resume``; every problem a ``UsageError`` naming the flag, the file and the line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qianfan_export_wait.console import inputs
from qianfan_export_wait.console.exits import UsageError
from qianfan_export_wait.console.inputs import _parse_lines, gather_ids, read_earlier_run
from qianfan_export_wait.models import id_file_lines, parse_export_id


def record(export_id: int | str, outcome: str, **extra: Any) -> str:
    return json.dumps({"export_id": export_id, "outcome": outcome, "state": None, **extra})


def test_arguments_then_file_each_id_once(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"\xef\xbb\xbf3 # first\r\n1\r\namemt-x\n")
    ids = gather_ids(["1", "2"], str(ids_file), io.StringIO())
    assert ids == [1, 2, 3, "amemt-x"]


def _by_the_full_rule(line: bytes) -> list[object]:
    try:
        return [parse_export_id(text) for _, text in id_file_lines((line,), first=2)]
    except ValueError:
        return ["refused"]


@given(
    st.one_of(
        st.binary(max_size=140),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=140).map(str.encode),
        st.from_regex(rb"[A-Za-z_+-]?[0-9A-Za-z#\- \r]{0,130}", fullmatch=True),
    ),
    st.sampled_from([b"\n", b"\r\n", b""]),
)
def test_the_fast_paths_for_usual_lines_read_every_line_as_the_full_rule_does(
    line: bytes, end: bytes
) -> None:
    raw = line + end
    if b"\n" in line:
        return  # one line of a file holds no newline
    try:
        fast: list[object] = list(_parse_lines("f", [b"1\n", raw]))[1:]
    except UsageError:
        fast = ["refused"]
    assert fast == _by_the_full_rule(raw)


def _read(parse: Any, data: bytes) -> list[object]:
    try:
        return list(parse("f", io.BytesIO(data)))
    except UsageError as exc:
        return ["refused", str(exc)]


@given(
    st.lists(
        st.one_of(
            st.integers(1, 2**63 - 1).map(lambda n: str(n).encode()),
            st.sampled_from(
                [b"007", b"0", b"+5", b"9" * 19, b"amemt-x", b"a\rb", b"# c", b"", b"\xef\xbb\xbf7"]
            ),
            st.binary(max_size=12),
        ),
        max_size=40,
    ),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
    st.integers(1, 64),
)
def test_reading_a_file_by_blocks_gives_what_reading_it_by_lines_gives(
    lines: list[bytes], end: bytes, last_newline: bool, block: int
) -> None:
    data = end.join(lines) + (end if last_newline and lines else b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "_BLOCK_BYTES", block)  # block edges land mid-line too
        by_blocks = _read(inputs._parse_blocks, data)
    assert by_blocks == _read(_parse_lines, data)


def test_ids_file_dash_reads_stdin_as_bytes() -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbf5\r\n6 # six\n"), encoding="cp1252")
    assert gather_ids([], "-", stdin) == [5, 6]


def test_a_bad_argument_is_named_by_its_position() -> None:
    with pytest.raises(UsageError, match=r"argument 2: export id '007' has leading zeros"):
        gather_ids(["1", "007"], None, io.StringIO())


def test_a_bad_line_is_named_by_flag_file_and_line(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1\n\n12 # fine\n1" + "0" * 25 + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"--ids-file {ids_file}:4: .*out of range"):
        gather_ids([], str(ids_file), io.StringIO())


def test_earlier_run_takes_done_and_failed_records_as_final(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.jsonl"
    lines = [
        record(1, "done"),
        record("amemt-2", "failed"),
        record(3, "pending"),
        record(4, "timeout"),
        record(5, "error"),
    ]
    earlier.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = read_earlier_run(str(earlier), downloading=False)
    assert run.ids == [1, "amemt-2", 3, 4, 5]
    assert set(run.final) == {1, "amemt-2"}
    assert run.final[1] == json.loads(lines[0])


def test_earlier_done_record_without_a_file_is_not_final_when_downloading(
    tmp_path: Path,
) -> None:
    earlier = tmp_path / "earlier.jsonl"
    fetched = {"path": "x", "bytes": 1, "sha256": "0" * 64}
    earlier.write_text(
        "\n".join(
            [
                record(1, "done", file=fetched),
                record(2, "done"),
                record(3, "done", download_error={"reason": "checksum"}),
            ]
        ),
        encoding="utf-8",
    )
    assert set(read_earlier_run(str(earlier), downloading=True).final) == {1}


def test_a_later_final_record_wins_and_an_unfinished_one_never_undoes_it(
    tmp_path: Path,
) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(
        "\n".join([record(1, "pending"), record(1, "done", polls=2), record(1, "pending")]),
        encoding="utf-8",
    )
    run = read_earlier_run(str(earlier), downloading=False)
    assert run.ids == [1]
    assert run.final[1]["polls"] == 2


def test_a_last_line_cut_off_mid_write_is_skipped(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(record(1, "done") + "\n" + record(2, "done")[:20], encoding="utf-8")
    assert read_earlier_run(str(earlier), downloading=False).ids == [1]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not a JSON line"),
        ('{"export_id": 1, "outcome": NaN}', "not a JSON line"),
        ("[1, 2]", "not a JSON object"),
        ('{"export_id": 1}', "no 'outcome'"),
        ('{"export_id": true, "outcome": "done"}', "bad 'export_id'"),
    ],
)
def test_a_line_that_is_not_a_record_is_named(tmp_path: Path, line: str, problem: str) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(record(1, "done") + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"--resume {earlier}:2: {problem}"):
        read_earlier_run(str(earlier), downloading=False)


def test_a_missing_earlier_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--resume .* does not exist"):
        read_earlier_run(str(tmp_path / "nope.jsonl"), downloading=False)
