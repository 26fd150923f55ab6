"""``console.output.LineWriter``: stdout written from a thread of its own, so that a reader
that stops reading never blocks the event loop, and one that goes away ends the writing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import Iterator

import pytest

from qianfan_export_wait.console.output import LineWriter


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        for fd in (read_end, write_end):
            with contextlib.suppress(OSError):  # closed by the test already
                os.close(fd)


async def test_lines_arrive_in_order_each_with_its_newline(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start()
        for n in range(2000):
            writer.write(f"line {n}")
        assert await writer.drain(timeout=10)
        writer.close()
    os.close(write_end)
    received = b""
    while chunk := os.read(read_end, 65536):
        received += chunk
    assert received.decode().splitlines() == [f"line {n}" for n in range(2000)]


async def test_a_stream_without_a_file_descriptor_gets_the_text() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream).start()
    writer.write("one")
    writer.write("two")
    assert await writer.drain(timeout=10)
    assert stream.getvalue() == "one\ntwo\n"


async def test_a_reader_that_stops_reading_never_blocks_the_event_loop(
    pipe: tuple[int, int],
) -> None:
    _, write_end = pipe
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start()
        for _ in range(1000):  # far more than a pipe buffer holds
            writer.write("x" * 1000)
        started = time.monotonic()
        await asyncio.sleep(0.05)  # the loop still runs
        assert not await writer.drain(timeout=0.2)
        assert time.monotonic() - started < 5
        assert writer.backlog > 0


async def test_drain_gives_up_once_the_reader_has_taken_nothing_for_the_stall_time(
    pipe: tuple[int, int],
) -> None:
    _, write_end = pipe
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start()
        for _ in range(1000):
            writer.write("z" * 1000)
        started = time.monotonic()
        assert not await writer.drain(stall=0.3)
        assert 0.3 <= time.monotonic() - started < 5


async def test_room_waits_while_the_backlog_is_high_and_returns_once_it_shrinks(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start()
        for _ in range(writer.high_water + 200):
            writer.write("y" * 200)
        room = asyncio.ensure_future(writer.room())
        await asyncio.sleep(0.1)
        assert not room.done()
        loop = asyncio.get_running_loop()
        while not room.done():  # a reader at last
            await loop.run_in_executor(None, os.read, read_end, 1 << 20)
        await room


async def test_a_reader_that_goes_away_ends_the_writing_with_broken_pipe(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    os.close(read_end)
    failures: list[OSError] = []
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start(on_failure=failures.append)
        writer.write("nobody reads this")
        assert not await writer.drain(timeout=10)
        await asyncio.sleep(0)  # the failure is reported through the loop
    assert isinstance(writer.error, BrokenPipeError)
    assert failures == [writer.error]
    writer.write("dropped")  # no error, nothing queued
    assert writer.backlog == 0


async def test_nobody_waiting_for_the_writer_goes_on_before_its_failure_is_reported(
    pipe: tuple[int, int],
) -> None:
    # The CLI once printed its summary after the reader of stdout went away (and exited
    # 141 only later): drain saw the error before on_failure had run in the loop.
    read_end, write_end = pipe
    os.close(read_end)
    failures: list[OSError] = []
    with os.fdopen(os.dup(write_end), "w") as stdout:
        writer = LineWriter(stdout).start(on_failure=failures.append)
        writer.write("nobody reads this")
        give_up = time.monotonic() + 10
        while writer.error is None and time.monotonic() < give_up:
            time.sleep(0.001)  # noqa: ASYNC251 (on purpose: the report must not run yet)
        assert isinstance(writer.error, BrokenPipeError)
        assert failures == []
        async with asyncio.timeout(10):  # inline, as the CLI's drain() at the end runs
            drained = await writer.drain()
        assert not drained
        assert failures == [writer.error]  # reported before anyone waiting went on


async def test_a_write_that_fails_is_reported_with_its_error() -> None:
    failures: list[OSError] = []
    with os.fdopen(os.open("/dev/full", os.O_WRONLY), "w") as full:
        writer = LineWriter(full).start(on_failure=failures.append)
        writer.write("no space")
        assert not await writer.drain(timeout=10)
        await asyncio.sleep(0)
    assert [type(error) for error in failures] == [OSError]
    assert failures[0].errno == 28  # ENOSPC


async def test_without_a_stream_every_line_is_discarded() -> None:
    writer = LineWriter(None).start()
    writer.write("nowhere")
    assert writer.backlog == 0
    assert await writer.drain(timeout=1)
