"""``console.progress``: the live bar (readable at 80 columns, the real request rate, never
wider than the terminal), lines printed above it, and the summary."""

from __future__ import annotations

import json
import re

import pytest
from terminal_screen import FakeTerminal, screen

from qianfan_export_wait.console.progress import (
    ProgressDisplay,
    ProgressSnapshot,
    render_bar,
    summary_line,
)

BIG = ProgressSnapshot(
    total=100_000,
    finished=45_678,
    failed=1_234,
    errors=56,
    timed_out=0,
    elapsed=3725.0,
    request_rate=187.4,
    requests=456_789,
    throttled=321,
)


def test_bar_at_80_columns_shows_count_failures_errors_rate_throttles_and_time() -> None:
    line = render_bar(BIG, 80)
    for part in ("45678/100000", "failed 1234", "errors 56", "187 req/s", "throttled 321"):
        assert part in line
    assert line.endswith("1:02:05")
    assert len(line) <= 77


def test_bar_shows_bytes_when_downloading() -> None:
    snapshot = ProgressSnapshot(**{**_fields(BIG), "bytes_received": 5 * 1024**2 + 1})
    assert "5.0 MiB" in render_bar(snapshot, 100)


@pytest.mark.parametrize("width", [20, 40, 60, 80, 120, 200])
def test_bar_leaves_the_last_columns_free_for_the_terminals_ctrl_c_echo(width: int) -> None:
    assert len(render_bar(BIG, width)) <= width - 3


def test_bar_drops_the_graphic_before_any_number_when_narrow() -> None:
    line = render_bar(BIG, 60)
    assert "[" not in line
    assert "45678/100000" in line and "1:02:05" in line


def test_bar_graphic_fills_with_the_share_finished() -> None:
    half = ProgressSnapshot(**{**_fields(BIG), "total": 100, "finished": 50, "failed": 0})
    bar = re.search(r"\[(.*?)\]", render_bar(half, 120, unicode=False))
    assert bar is not None
    assert bar.group(1).count("#") == bar.group(1).count("-")


def test_summary_names_every_outcome_the_requests_and_the_files() -> None:
    snapshot = ProgressSnapshot(
        **{**_fields(BIG), "done": 44_388, "pending": 3, "bytes_received": 2048, "files": 7}
    )
    line = summary_line(snapshot, interrupted="interrupted by SIGINT")
    assert line.startswith("100000 exports in 3725.0 s: 44388 done, 1234 failed, 56 errors")
    assert "3 pending" in line and "456789 requests, 321 throttled" in line
    assert "7 files, 2.0 KiB received" in line
    assert line.endswith("(interrupted by SIGINT)")
    assert "\n" not in line


def test_a_line_written_around_the_bar_lands_above_it_and_the_bar_stays_whole() -> None:
    terminal = FakeTerminal()
    display = ProgressDisplay(terminal, enabled=True, stdout_is_terminal=True, width=lambda: 80)
    display.update(BIG)
    for n in range(3):
        display.around_line(lambda n=n: terminal.write(json.dumps({"export_id": n}) + "\n"))
    shown = screen(terminal.getvalue())
    assert [json.loads(line)["export_id"] for line in shown[:-1]] == [0, 1, 2]
    assert shown[-1] == render_bar(BIG, 80)


def test_closing_takes_the_bar_off_the_screen() -> None:
    terminal = FakeTerminal()
    display = ProgressDisplay(terminal, enabled=True, width=lambda: 80)
    display.update(BIG)
    display.message("a message")
    display.close()
    assert screen(terminal.getvalue()) == ["a message", ""]


@pytest.mark.parametrize("bar", [True, False], ids=["with-bar", "no-progress"])
def test_a_long_message_on_a_terminal_wraps_between_words_within_80_columns(bar: bool) -> None:
    terminal = FakeTerminal()
    display = ProgressDisplay(terminal, enabled=bar, width=lambda: 80)
    text = "qianfan-export-wait: " + summary_line(BIG)
    assert len(text) > 80
    display.message(text)
    display.close()
    shown = [line for line in screen(terminal.getvalue()) if line]
    assert len(shown) >= 2 and all(len(line) < 80 for line in shown)
    assert all(line.startswith("  ") for line in shown[1:])
    assert " ".join(line.strip() for line in shown) == text


def test_nothing_is_drawn_when_stderr_is_not_a_terminal() -> None:
    stream = FakeTerminal()
    stream.isatty = lambda: False  # type: ignore[method-assign]
    display = ProgressDisplay(stream, enabled=True)
    display.update(BIG)
    display.message("only this")
    display.close()
    assert stream.getvalue() == "only this\n"


def _fields(snapshot: ProgressSnapshot) -> dict[str, object]:
    return {name: getattr(snapshot, name) for name in ProgressSnapshot.__slots__}


def test_one_of_each_reads_as_english() -> None:
    from qianfan_export_wait.console.progress import ProgressSnapshot, summary_line

    fields = {name: 1 for name in ProgressSnapshot.__dataclass_fields__}
    fields.update(elapsed=1.0, bytes_received=10, resumed=0, pending=0)
    line = summary_line(ProgressSnapshot(**fields))  # type: ignore[arg-type]
    assert line.startswith("1 export in 1.0 s: 1 done, 1 failed, 1 error, 1 timed out")
    assert "1 request, 1 throttled" in line and "1 file, " in line
    assert "1 download failed" in line


def test_the_bar_measures_the_terminal_it_draws_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # stdout may be a file or a wider terminal; the bar is drawn on stderr's.
    import fcntl
    import os
    import pty
    import struct
    import termios

    from qianfan_export_wait.console.progress import ProgressDisplay

    monkeypatch.delenv("COLUMNS", raising=False)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    try:
        with open(follower, "w", closefd=False) as stderr:
            display = ProgressDisplay(stderr, enabled=True)
            assert display._width() == 50
    finally:
        os.close(follower)
        os.close(leader)
