"""Hostile servers: whatever comes back over the wire, the client answers with a status
for the id asked about or a ``QianfanError`` subclass within the request timeout, memory
stays bounded, and the waiter gives every id an outcome.

The server is a raw TCP listener on 127.0.0.1 (``hardening_support.raw_server``), so the
bytes on the wire are exactly the test's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from hardening_support import (
    RawServer,
    http_response,
    raw_server,
    run_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statuses import RESULT_FIELDS, v1_body
from tenacity import wait_none
from waiter_support import make_waiter

from qianfan_export_wait import (
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    QianfanError,
)
from qianfan_export_wait.errors import (
    ResponseFormatError,
    TransientError,
    UnexpectedAnswerError,
)

REQUEST_TIMEOUT = 0.5
# The issue's own bound: an answer (or error) within the request timeout, with slack
# for a loaded 2-core machine.
ANSWER_BOUND = REQUEST_TIMEOUT + 2.5
MIB = 1024 * 1024
FIFTY_MIB = 50 * MIB
CHUNK = b"x" * (64 * 1024)
CREDENTIALS = Credentials("AKhostiletests", "SKhostiletests")


def client_for(server: RawServer) -> ExportStatusClient:
    return ExportStatusClient(
        CREDENTIALS,
        base_url=server.base_url,
        request_timeout=REQUEST_TIMEOUT,
        max_attempts=1,
        retry_wait=wait_none(),
    )


class Script:
    """What the raw server answers next: bytes, or a coroutine that writes anything."""

    def __init__(self) -> None:
        self.payload: bytes = b""

    async def respond(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(self.payload)
        await writer.drain()


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[Script, RawServer]]:
    script = Script()
    async with raw_server(script.respond) as server:
        yield script, server


async def status_or_error(client: ExportStatusClient, export_id: int = 96) -> Any:
    """The status, or the exception, within the bound (a hang fails the test)."""
    try:
        return await asyncio.wait_for(client.get_status(export_id), ANSWER_BOUND)
    except QianfanError as error:
        return error


async def answer_to(scripted: tuple[Script, RawServer], payload: bytes) -> Any:
    """What a fresh client makes of the server sending ``payload`` (raw HTTP bytes)."""
    script, server = scripted
    script.payload = payload
    async with client_for(server) as client:
        return await status_or_error(client)


# --- property tests over bodies -------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def near_documented_bodies(draw: st.DrawFn) -> Any:
    """A documented success body with any field replaced by any JSON value, dropped, or
    joined by an ``error_code``; or any JSON value at all."""
    body: dict[str, Any] = v1_body(
        96, draw(st.sampled_from(["Done", "Fail", "Pending"])), documented=True
    )
    result = body["result"]
    for name in draw(st.lists(st.sampled_from(RESULT_FIELDS), unique=True, max_size=4)):
        if draw(st.booleans()):
            result.pop(name, None)
        else:
            result[name] = draw(JSON_VALUES)
    if draw(st.booleans()):
        body["result"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        body["error_code"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        body["log_id"] = draw(JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    return body


HTTP_STATUSES = st.sampled_from([200, 200, 200, 201, 400, 401, 403, 404, 429, 500, 503])
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_status_for_96_or_qianfan_error(answer: object) -> None:
    if isinstance(answer, QianfanError):
        return
    assert getattr(answer, "export_id", None) == 96, f"status for the wrong export: {answer!r}"


@PROPERTY_SETTINGS
@given(body=near_documented_bodies(), status=HTTP_STATUSES)
async def test_any_json_body_gives_the_status_asked_for_or_a_qianfan_error(
    scripted: tuple[Script, RawServer], body: Any, status: int
) -> None:
    payload = http_response(json.dumps(body).encode("utf-8"), status=status)
    assert_status_for_96_or_qianfan_error(await answer_to(scripted, payload))


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=300), status=HTTP_STATUSES)
async def test_any_bytes_body_gives_the_status_asked_for_or_a_qianfan_error(
    scripted: tuple[Script, RawServer], body: bytes, status: int
) -> None:
    assert_status_for_96_or_qianfan_error(
        await answer_to(scripted, http_response(body, status=status))
    )


# --- named hostile bodies -------------------------------------------------------------------


def _with_result(**fields: Any) -> bytes:
    body = v1_body(96, documented=True)
    body["result"].update(fields)
    return json.dumps(body).encode("utf-8")


NESTED_LISTS = b"[" * 100_000 + b"]" * 100_000
HOSTILE_BODIES = [
    pytest.param(_with_result(state=1), id="state-an-int"),
    pytest.param(_with_result(state=None), id="state-null"),
    pytest.param(_with_result(state=["Done"]), id="state-a-list"),
    pytest.param(_with_result(state=""), id="state-empty"),
    pytest.param(_with_result(exportID="96"), id="exportID-a-string"),
    pytest.param(_with_result(exportID=True), id="exportID-true"),
    pytest.param(_with_result(exportID=96.0), id="exportID-a-float"),
    pytest.param(_with_result(exportID=10**30), id="exportID-huge"),
    pytest.param(_with_result(exportID=97), id="answer-for-another-export"),
    pytest.param(b'{"result": {"state": "Done", "exportID": 1e400}}', id="exportID-overflows"),
    pytest.param(b'{"result": {"state": "Done", "exportID": NaN}}', id="exportID-nan"),
    pytest.param(b'{"log_id": "1"}', id="result-missing"),
    pytest.param(b'{"result": []}', id="result-a-list"),
    pytest.param(b'{"result": "Done"}', id="result-a-string"),
    pytest.param(b'{"result": null}', id="result-null"),
    pytest.param(b"[1, 2, 3]", id="body-a-list"),
    pytest.param(b"null", id="body-null"),
    pytest.param(b"96", id="body-a-number"),
    pytest.param(b"", id="body-empty"),
    pytest.param(NESTED_LISTS, id="100000-nested-lists"),
    pytest.param(b'{"result": ' + NESTED_LISTS + b"}", id="result-100000-nested-lists"),
    pytest.param(b'{"result": {"state": "\xff\xfe Done"}}', id="non-utf8-bytes"),
    pytest.param(b"\x00" * 1000, id="nul-bytes"),
    pytest.param(b'{"result": {"state": "Done", "exportID": 96', id="truncated-json"),
    pytest.param(b'{"result": {"exportID": ' + b"9" * 5000 + b"}}", id="5000-digit-number"),
]


@pytest.mark.parametrize("payload", HOSTILE_BODIES)
async def test_malformed_success_body_is_a_response_format_error(
    scripted: tuple[Script, RawServer], payload: bytes
) -> None:
    answer = await answer_to(scripted, http_response(payload))
    assert isinstance(answer, ResponseFormatError), answer


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"error_code": ' + b"9" * 4000 + b"}", id="error-code-4000-digits"),
        pytest.param(_with_result(exportID=int("9" * 4000)), id="exportID-4000-digits"),
    ],
)
async def test_huge_numbers_give_a_short_error_message(
    scripted: tuple[Script, RawServer], payload: bytes
) -> None:
    answer = await answer_to(scripted, http_response(payload))
    assert isinstance(answer, QianfanError)
    assert len(str(answer)) < 500


# --- oversized, endless and silent ----------------------------------------------------------


async def _fifty_mib_with_length(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % FIFTY_MIB
    )
    await server.stream(writer, CHUNK, FIFTY_MIB)


async def _fifty_mib_close_delimited(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    await server.stream(writer, CHUNK, FIFTY_MIB)
    writer.close()


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _fifty_mib_chunked(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    await server.stream(writer, _chunked(CHUNK), FIFTY_MIB)


async def _endless_chunked(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    await server.stream(writer, _chunked(CHUNK), math.inf)


Streamer = Callable[[RawServer, asyncio.StreamWriter], Awaitable[None]]


@pytest.mark.parametrize(
    "streamer",
    [
        pytest.param(_fifty_mib_with_length, id="50MiB-with-content-length"),
        pytest.param(_fifty_mib_close_delimited, id="50MiB-without-length-close-delimited"),
        pytest.param(_fifty_mib_chunked, id="50MiB-chunked"),
        pytest.param(_endless_chunked, id="endless-chunked"),
    ],
)
async def test_oversized_body_is_refused_without_reading_it_and_memory_stays_bounded(
    streamer: Streamer,
) -> None:
    async def respond(body: bytes, writer: asyncio.StreamWriter) -> None:
        await streamer(server, writer)

    async with raw_server(respond) as server:
        async with client_for(server) as client:
            tracemalloc.start()
            try:
                started = time.monotonic()
                answer = await status_or_error(client)
                elapsed = time.monotonic() - started
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        # Let the server notice the hang-up before counting what it sent.
        for _ in range(50):
            if not server.tasks:
                break
            await asyncio.sleep(0.02)
    assert isinstance(answer, ResponseFormatError), answer
    assert "refused" in str(answer)
    assert elapsed < ANSWER_BOUND
    assert peak < 8 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"
    assert server.bytes_sent < 16 * MIB, f"server got {server.bytes_sent / MIB:.1f} MiB out"


async def _trickle_forever(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with_pause = True
    while with_pause:
        writer.write(_chunked(b" "))
        await writer.drain()
        await asyncio.sleep(0.01)


async def _never_answer(server: RawServer, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()


async def _headers_then_silence(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n")
    await writer.drain()
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    "streamer",
    [
        pytest.param(_trickle_forever, id="body-trickles-forever"),
        pytest.param(_never_answer, id="accepts-and-never-answers"),
        pytest.param(_headers_then_silence, id="half-the-headers-then-silence"),
    ],
)
async def test_server_that_never_finishes_is_a_transient_timeout(streamer: Streamer) -> None:
    async def respond(body: bytes, writer: asyncio.StreamWriter) -> None:
        await streamer(server, writer)

    async with raw_server(respond) as server:
        async with client_for(server) as client:
            started = time.monotonic()
            answer = await status_or_error(client)
            elapsed = time.monotonic() - started
    assert type(answer) is TransientError, answer
    assert "timeout" in str(answer)
    assert elapsed < ANSWER_BOUND


async def test_server_that_never_reads_the_request_is_a_transient_timeout() -> None:
    release = asyncio.Event()

    async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await release.wait()
        finally:
            writer.close()

    listener = await asyncio.start_server(ignore, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with ExportStatusClient(
            CREDENTIALS,
            base_url=f"http://127.0.0.1:{port}",
            request_timeout=REQUEST_TIMEOUT,
            max_attempts=1,
        ) as client:
            started = time.monotonic()
            answer = await status_or_error(client)
            elapsed = time.monotonic() - started
    finally:
        release.set()
        listener.close()
        await listener.wait_closed()
    assert type(answer) is TransientError, answer
    assert elapsed < ANSWER_BOUND


# --- the waiter over good and hostile ids ---------------------------------------------------

GOOD_IDS = list(range(1, 21))
HOSTILE_BY_ID: dict[int, bytes | Streamer] = {
    1001: NESTED_LISTS,
    1002: b'{"result": {"state": "\xff"}}',
    1003: b'{"result": []}',
    1004: _with_result(exportID="1004", state=7),
    1005: _fifty_mib_with_length,
    1006: _fifty_mib_chunked,
    1007: _never_answer,
    1008: _trickle_forever,
    1009: _fifty_mib_close_delimited,
}


async def test_waiter_gives_every_good_and_hostile_id_one_outcome() -> None:
    async def respond(body: bytes, writer: asyncio.StreamWriter) -> None:
        export_id = json.loads(body)["exportID"]
        hostile = HOSTILE_BY_ID.get(export_id)
        if hostile is None:
            writer.write(http_response(json.dumps(v1_body(export_id, documented=True)).encode()))
        elif isinstance(hostile, bytes):
            writer.write(http_response(hostile))
        else:
            await hostile(server, writer)
            return
        await writer.drain()

    ids = [*GOOD_IDS, *HOSTILE_BY_ID]
    policy = PollPolicy(min_delay=0.05, max_delay=0.2, timeout=10, max_unavailable=1.0)
    async with raw_server(respond) as server:
        async with client_for(server) as client:
            waiter = ExportWaiter(client, policy=policy, max_in_flight=16)
            seen = [outcome async for outcome in waiter.as_completed(ids)]
    assert sorted(outcome.export_id for outcome in seen) == sorted(ids)
    kinds = {outcome.export_id: outcome.kind for outcome in seen}
    assert {i: kinds[i] for i in GOOD_IDS} == dict.fromkeys(GOOD_IDS, OutcomeKind.DONE)
    assert {i: kinds[i] for i in HOSTILE_BY_ID} == dict.fromkeys(HOSTILE_BY_ID, OutcomeKind.ERROR)
    for outcome in seen:
        if outcome.export_id in HOSTILE_BY_ID:
            assert isinstance(outcome.error, TransientError), outcome


# --- answers about another export --------------------------------------------------------------


class AnswersForAnotherExport:
    """Answers a poll of export ``i`` about export ``i + 1000`` the first ``wrong`` times
    (``None``: always), then about ``i`` itself."""

    def __init__(self, wrong: int | None) -> None:
        self.wrong = wrong
        self.polls: dict[int, int] = {}

    async def respond(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        export_id = json.loads(body)["exportID"]
        polls = self.polls[export_id] = self.polls.get(export_id, 0) + 1
        about = export_id if self.wrong is not None and polls > self.wrong else export_id + 1000
        writer.write(http_response(json.dumps(v1_body(about, documented=True)).encode()))
        await writer.drain()


async def test_an_answer_about_another_export_is_a_retried_protocol_error() -> None:
    server = AnswersForAnotherExport(wrong=1)
    async with raw_server(server.respond) as raw, client_for(raw) as client:
        with pytest.raises(UnexpectedAnswerError, match=r"1096.*not 96") as caught:
            await client.fetch_once(96)
        assert isinstance(caught.value, ResponseFormatError)  # as before: retried
        assert (caught.value.asked, caught.value.answered) == (96, 1096)
        assert client.stats.transient_errors == 1
    server = AnswersForAnotherExport(wrong=1)
    async with raw_server(server.respond) as raw, client_for(raw) as client:
        client.max_attempts = 2
        assert (await client.get_status(96)).export_id == 96


def _about_another(export_id: int) -> Callable[[], UnexpectedAnswerError]:
    """What the client raises for an answer about ``export_id + 1000`` (see above)."""
    return lambda: UnexpectedAnswerError(
        f"answer is for export {export_id + 1000}, not {export_id}",
        asked=export_id,
        answered=export_id + 1000,
    )


async def test_answers_about_other_exports_are_retried_and_never_make_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: eight such answers in a row were an outage: polling paused to one probe.
    ids = list(range(1, 21))
    waiter, client, _ = make_waiter(
        {i: [*[_about_another(i)] * 3, "Done"] for i in ids},
        policy=PollPolicy(min_delay=1, max_delay=5, timeout=600),
    )
    with caplog.at_level(logging.WARNING, logger="qianfan_export_wait"):
        report = await waiter.wait_all(ids)
    assert {outcome.kind for outcome in report.values()} == {OutcomeKind.DONE}
    assert waiter.stats.retries == 3 * len(ids)
    assert "not answering" not in caplog.text
    assert all(len(client.times_for(i)) == 4 for i in ids)


async def test_an_export_only_ever_answered_about_another_ends_as_that_error_not_an_outage() -> (
    None
):
    # Before: the answers made an outage, and each export ended as ServiceUnavailableError
    # (the command line's exit 69, "the service stayed unavailable").
    waiter, _, _ = make_waiter(
        {i: [_about_another(i)] for i in [*range(1, 11), 99]},
        policy=PollPolicy(min_delay=1, max_delay=5, timeout=600, max_unavailable=60),
    )
    report = await waiter.wait_all(range(1, 11))
    timed = await waiter.submit(99, timeout=30)
    for outcome in report.values():
        assert outcome.kind is OutcomeKind.ERROR, outcome
        assert isinstance(outcome.error, UnexpectedAnswerError)
        assert not outcome.unavailable
        assert 60 <= outcome.elapsed < 61
    assert timed.kind is OutcomeKind.TIMEOUT
    assert isinstance(timed.error, UnexpectedAnswerError) and not timed.unavailable


async def test_cli_exits_1_not_69_when_the_server_answers_about_other_exports() -> None:
    server = AnswersForAnotherExport(wrong=None)
    async with raw_server(server.respond) as raw:
        run = await run_cli(
            "wait",
            "1",
            "2",
            "--endpoint",
            raw.base_url,
            "--min-delay",
            "0.05",
            "--max-delay",
            "0.2",
            "--max-unavailable",
            "1",
            "--timeout",
            "20",
            "--no-progress",
        )
    assert run.code == 1, run.stderr[-2000:]
    assert [line["outcome"] for line in run.records] == ["error", "error"]
    assert all(
        "not 1" in line["error"]["message"] or "not 2" in line["error"]["message"]
        for line in run.records
    )
