"""``console.inputs``: ids from arguments and ``--ids-file``, and an earlier run's lines for
``--resume``; every problem a ``UsageError`` naming the flag, the file and the line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
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


# --- --resume: bounded lines, streamed records, files in place ------------------------------


def test_a_line_over_the_bound_is_an_error_naming_it_without_reading_it_whole(
    tmp_path: Path,
) -> None:
    earlier = tmp_path / "earlier.jsonl"
    with earlier.open("wb") as out:
        out.write(record(1, "done").encode() + b"\n")
        out.write(b'{"export_id": 2, "outcome": "done", "pad": "' + b"x" * (3 << 20) + b'"}\n')
    with pytest.raises(UsageError, match=rf"--resume {earlier}:2: line longer than 1048576"):
        read_earlier_run(str(earlier), downloading=False)


def test_a_line_just_within_the_bound_is_read(tmp_path: Path) -> None:
    head = b'{"export_id": 1, "outcome": "done", "pad": "'
    pad = b"x" * (inputs.MAX_RESUME_LINE - len(head) - 3)
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_bytes(head + pad + b'"}\n')
    assert len(earlier.read_bytes()) == inputs.MAX_RESUME_LINE
    run = read_earlier_run(str(earlier), downloading=False)
    assert run.final[1]["pad"] == pad.decode()


def test_final_records_are_read_again_from_the_file_not_held(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(record(1, "done", polls=3) + "\n" + record(2, "done") + "\n")
    run = read_earlier_run(str(earlier), downloading=False)
    assert isinstance(run.final, inputs.FinalRecords)
    # The file changed since it was read (someone wrote to it): a record that is no longer
    # where it was is not taken, and that export is waited for again.
    earlier.write_text(record(2, "done") + "\n" + record(1, "done", polls=3) + "\n")
    assert run.final.get(1) is None
    assert run.final.get(2) is None or run.final[2]["export_id"] == 2


def file_record(source: Path, **changes: object) -> dict[str, object]:
    data = source.read_bytes()
    return {
        "path": str(source),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **changes,
    }


def test_a_file_in_place_is_a_regular_file_inside_the_folder_with_its_size_and_sha256(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "files"
    (folder / "7").mkdir(parents=True)
    good = folder / "7" / "result.csv"
    good.write_bytes(b"a,b\n1,2\n")
    outside = tmp_path / "outside.csv"
    outside.write_bytes(good.read_bytes())
    link = folder / "7" / "link.csv"
    link.symlink_to(outside)
    escape = folder / "escape"
    escape.symlink_to(tmp_path)  # a folder link that leads out
    assert inputs.file_in_place(file_record(good), folder)
    assert inputs.file_in_place(
        file_record(good, path=str(folder / "7" / ".." / "7" / "result.csv")), folder
    )
    assert not inputs.file_in_place(file_record(outside), folder)
    assert not inputs.file_in_place(file_record(link), folder)
    assert not inputs.file_in_place(file_record(good, path=str(escape / "outside.csv")), folder)
    assert not inputs.file_in_place(
        file_record(good, path=str(folder / ".." / "outside.csv")), folder
    )
    assert not inputs.file_in_place(file_record(good, sha256="0" * 64), folder)
    assert not inputs.file_in_place(file_record(good, bytes=3), folder)
    assert not inputs.file_in_place(file_record(good, bytes=True), folder)
    assert not inputs.file_in_place(file_record(good, sha256="not hex"), folder)
    assert not inputs.file_in_place(file_record(good, path=str(folder / "7")), folder)
    assert not inputs.file_in_place(file_record(good, path=str(folder / "gone.csv")), folder)
    assert not inputs.file_in_place({"path": str(good)}, folder)
    assert not inputs.file_in_place("not a record", folder)
    os.mkfifo(folder / "7" / "fifo")
    assert not inputs.file_in_place(file_record(good, path=str(folder / "7" / "fifo")), folder)


_RECORD_LINES = st.one_of(
    st.builds(
        lambda export_id, outcome, extra: json.dumps(
            {"export_id": export_id, "outcome": outcome, **extra}
        ).encode(),
        st.one_of(st.integers(1, 5), st.sampled_from(["amemt-a", "amemt-b"])),
        st.sampled_from(["done", "failed", "pending", "timeout", "error"]),
        st.dictionaries(st.sampled_from(["polls", "state", "n"]), st.integers(0, 9)),
    ),
    st.binary(max_size=40),
    st.sampled_from([b"", b"   ", b"[]", b'{"export_id": 0, "outcome": "done"}', b"\xff\xfe"]),
)


@given(lines=st.lists(_RECORD_LINES, max_size=12), cut_last=st.booleans())
@settings(max_examples=200, deadline=None)
def test_resume_reader_takes_what_an_oracle_would_or_names_a_bad_line(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], cut_last: bool
) -> None:
    earlier = tmp_path_factory.mktemp("fuzz") / "earlier.jsonl"
    lines = [line.replace(b"\n", b" ") for line in lines]
    text = b"".join(line + b"\n" for line in lines)
    if cut_last and text:
        text = text[:-1]
    earlier.write_bytes(text)
    # The oracle: the rules, written plainly, on the whole file in memory.
    ids: dict[object, None] = {}
    final: dict[object, dict[str, Any]] = {}
    problem = None
    for number, raw in enumerate(text.split(b"\n")[: len(lines)], 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            assert isinstance(item, dict) and isinstance(item.get("outcome"), str)
            inputs.validate_export_id(item.get("export_id"))
        except (ValueError, AssertionError, RecursionError):
            if number == len(lines) and cut_last:
                break
            problem = number
            break
        ids.setdefault(item["export_id"], None)
        if item["outcome"] in ("done", "failed"):
            final[item["export_id"]] = item
    if problem is not None:
        with pytest.raises(UsageError, match=rf"--resume {earlier}:{problem}: "):
            read_earlier_run(str(earlier), downloading=False)
        return
    run = read_earlier_run(str(earlier), downloading=False)
    assert run.ids == list(ids)
    assert dict(run.final) == final


_PEAK_CHILD = """
import io, resource, sys
from qianfan_export_wait.console.inputs import gather_ids, read_earlier_run
from qianfan_export_wait.console.printer import printer_for
from qianfan_export_wait.console.records import json_line

kind, path = sys.argv[1], sys.argv[2]
if kind == "resume":  # as the CLI prints an earlier run's records, in input order
    earlier = read_earlier_run(path, downloading=False)
    final = earlier.final
    try:
        printer = printer_for("input", earlier.ids, lambda i: json_line(final[i]))
    except TypeError:  # a printer that holds lines only as text
        printer = printer_for("input", earlier.ids)
    getattr(final, "open", lambda: None)()
    with open("/dev/null", "w") as sink:
        for export_id in earlier.ids:
            if export_id not in final:
                continue  # waited for: every line after it is held until it ends
            add_later = getattr(printer, "add_later", None)
            ready = add_later(export_id) if add_later else printer.add(
                export_id, json_line(final[export_id])
            )
            sink.writelines(line + "\\n" for line in ready)
        pending = [(1, json_line({"export_id": 1, "outcome": "pending"}))]
        sink.writelines(line + "\\n" for line in printer.remaining(pending))
    getattr(final, "close", lambda: None)()
else:
    printer = printer_for("input", gather_ids([], path, io.StringIO()))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_big_resume_file_takes_memory_like_an_ids_file_of_the_same_ids(
    tmp_path: Path,
) -> None:
    # Records of 2 KB, as a Done export's line with its result is: held whole, as they
    # were (and again as lines, behind a first export still waited for, in input order),
    # 50,000 of them took several times the memory of their ids.
    count = 50_000
    pad = "r" * 2000
    resume, ids_file = tmp_path / "earlier.jsonl", tmp_path / "ids.txt"
    with resume.open("w") as out:
        out.write(record(1, "pending") + "\n")  # the first is waited for
        for n in range(2, count + 1):
            out.write(record(n, "done", result={"exportID": n, "pad": pad}) + "\n")
    ids_file.write_text("".join(f"{n}\n" for n in range(1, count + 1)))

    def peak(kind: str, path: Path) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_CHILD, kind, str(path)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return int(done.stdout.split()[-1])

    ratio = peak("resume", resume) / peak("ids", ids_file)
    print(f"resume file peak / ids file peak = {ratio:.2f}")
    assert ratio < 1.5, f"resume file peak / ids file peak = {ratio:.2f}"
