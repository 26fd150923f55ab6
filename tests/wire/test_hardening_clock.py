"""Clock skew: when the local clock is minutes off, the server answers ``RequestExpired``
with its own ``Date``; the client learns the offset, re-signs, retries once, and keeps
the offset so later requests need no resync.

The simulator accepts a signature from ``max_future_seconds`` (300 s) before its clock
until the signature's expiration (1800 s) after it, as BCE does. A server 15 minutes
*behind* therefore refuses the client's signature; a server 15 minutes *ahead* still
accepts it (it is within the 30-minute expiration), so no resync is needed or made.
A server 45 minutes ahead is past the expiration and forces the resync.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

import pytest
from aiohttp import web
from hardening_support import http_response, raw_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_server import recording_server
from statuses import v1_body

from qianfan_export_wait import (
    AuthError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    QianfanError,
)
from qianfan_export_wait.client import MAX_CLOCK_OFFSET
from qianfan_export_wait.testing import simulated_qianfan

FIFTEEN_MINUTES = 15 * 60
FORTY_FIVE_MINUTES = 45 * 60


@pytest.mark.parametrize(
    "skew",
    [-FIFTEEN_MINUTES, FORTY_FIVE_MINUTES, -FORTY_FIVE_MINUTES],
    ids=["server-15min-behind", "server-45min-ahead", "server-45min-behind"],
)
async def test_skewed_server_clock_is_learnt_with_one_resync(skew: float) -> None:
    async with simulated_qianfan(exports=2, max_seconds=0.0, clock_skew=skew) as fake:
        async with fake.client(max_attempts=1) as client:
            first = await client.get_status(1)
            assert client.stats.clock_resyncs == 1
            assert abs(client.clock_offset - skew) < 5
            second = await client.get_status(2)
        expired = fake.stats.requests_by_outcome["auth_failed"]
    assert (first.state_name, second.state_name) == ("Done", "Done")
    assert client.stats.clock_resyncs == 1
    assert client.stats.requests == 3, "one refused, one re-signed, one right first time"
    assert expired == 1


async def test_server_fifteen_minutes_ahead_accepts_the_signature_without_resync() -> None:
    async with simulated_qianfan(exports=1, max_seconds=0.0, clock_skew=FIFTEEN_MINUTES) as fake:
        async with fake.client(max_attempts=1) as client:
            status = await client.get_status(1)
    assert status.state_name == "Done"
    assert client.stats.clock_resyncs == 0
    assert client.stats.requests == 1


@pytest.mark.parametrize("skew", [-FIFTEEN_MINUTES, FORTY_FIVE_MINUTES])
async def test_waiter_over_many_ids_under_skew_resyncs_once(skew: float) -> None:
    async with simulated_qianfan(
        exports=300, max_seconds=1.0, fail_ratio=0.1, seed=5, clock_skew=skew
    ) as fake:
        async with fake.client() as client:
            waiter = ExportWaiter(
                client, policy=PollPolicy(min_delay=0.05, max_delay=0.3, timeout=30)
            )
            report = await waiter.wait_all(range(1, 301))
        truth = {
            i: OutcomeKind.DONE if fake.state_of(i) == "Done" else OutcomeKind.FAILED
            for i in range(1, 301)
        }
        expired = fake.stats.requests_by_outcome["auth_failed"]
    assert {i: outcome.kind for i, outcome in report.items()} == truth
    assert client.stats.clock_resyncs == 1
    assert expired == 1


async def test_server_clock_that_moves_again_is_resynced_again() -> None:
    async with simulated_qianfan(exports=1, max_seconds=0.0, clock_skew=-FIFTEEN_MINUTES) as fake:
        async with fake.client(max_attempts=1) as client:
            await client.get_status(1)
            fake.configure(clock_skew=FORTY_FIVE_MINUTES)
            await client.get_status(1)
    assert client.stats.clock_resyncs == 2
    assert client.stats.requests == 4


async def test_request_expired_again_after_the_resync_is_an_auth_error_not_a_loop() -> None:
    async def always_expired(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error_code": 14, "error_msg": "RequestExpired"},
            status=401,
            headers={
                "X-Bce-Error-Code": "RequestExpired",
                "Date": email.utils.formatdate(time.time() + 7200, usegmt=True),
            },
        )

    async with recording_server(always_expired) as server:
        async with ExportStatusClient(
            Credentials("ak", "sk"), base_url=server.base_url, max_attempts=3
        ) as client:
            with pytest.raises(AuthError, match="RequestExpired"):
                await client.get_status(1)
    assert client.stats.clock_resyncs == 1
    assert len(server.requests) == 2


async def test_requests_signed_before_another_learnt_the_offset_are_resent_not_refused() -> None:
    # Fifty requests leave with the old offset; the first answer teaches the new one, and
    # the other 49 come back expired: each is signed again and resent, none is an error.
    async with simulated_qianfan(exports=50, max_seconds=0.0) as fake:
        async with fake.client(max_attempts=1) as client:
            await client.get_status(1)  # the connection and offset are settled first
            fake.configure(clock_skew=-2 * 3600)
            statuses = await asyncio.gather(*(client.fetch_once(i) for i in range(1, 51)))
    assert {status.state_name for status in statuses} == {"Done"}
    assert client.stats.clock_resyncs == 1
    assert client.stats.requests == 1 + 50 + 50


# --- a server Date that cannot be right ------------------------------------------------------


class ExpiredOnce:
    """Answers the first request ``RequestExpired`` with ``date`` as its ``Date`` header
    (``None``: no Date), every later one with the status asked for."""

    def __init__(self, date: str | None) -> None:
        self.date = date
        self.answered = 0

    async def respond(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        self.answered += 1
        if self.answered == 1:
            headers = {"X-Bce-Error-Code": "RequestExpired"}
            if self.date is not None:
                headers["Date"] = self.date
            payload = b'{"code": "RequestExpired", "message": "expired", "requestId": "r1"}'
            writer.write(http_response(payload, status=400, headers=headers))
        else:
            export_id = json.loads(body)["exportID"]
            writer.write(http_response(json.dumps(v1_body(export_id, documented=True)).encode()))
        await writer.drain()


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


BAD_DATES = [
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="year-9999"),
    pytest.param("Mon, 01 Jan 0001 00:00:00 GMT", id="year-1"),
    pytest.param(None, id="missing"),
    pytest.param("", id="empty"),
    pytest.param("yesterday-ish", id="garbage"),
    pytest.param("Thu, 32 Foo 2026 99:99:99 GMT", id="impossible-fields"),
]


@pytest.mark.parametrize("date", BAD_DATES)
async def test_a_date_that_cannot_be_right_leaves_the_offset_alone(date: str | None) -> None:
    # Before: Date year 9999 was adopted, and every later request raised a bare
    # "ValueError: year 10000 is out of range" for the life of the client.
    server = ExpiredOnce(date)
    async with raw_server(server.respond) as raw:
        async with ExportStatusClient(
            Credentials("ak", "sk"), base_url=raw.base_url, max_attempts=1
        ) as client:
            with pytest.raises(AuthError, match="RequestExpired"):
                await client.get_status(1)
            assert client.clock_offset == 0.0
            later = await client.get_status(2)  # signed with the local clock, as before
    assert later.state_name == "Done"
    assert client.stats.clock_resyncs == 0


@pytest.mark.parametrize("days", [-1.5, 2.0, 365.0])
async def test_a_date_more_than_a_day_off_is_not_adopted(
    days: float, caplog: pytest.LogCaptureFixture
) -> None:
    server = ExpiredOnce(_http_date(days * 86400))
    async with raw_server(server.respond) as raw:
        async with ExportStatusClient(
            Credentials("ak", "sk"), base_url=raw.base_url, max_attempts=1
        ) as client:
            with pytest.raises(AuthError, match="RequestExpired"):
                await client.get_status(1)
            assert (await client.get_status(2)).state_name == "Done"
    assert client.clock_offset == 0.0
    assert "not adopted" in caplog.text


@pytest.mark.parametrize("hours", [-23.0, 23.0])
async def test_a_date_within_a_day_is_learnt(hours: float) -> None:
    server = ExpiredOnce(_http_date(hours * 3600))
    async with raw_server(server.respond) as raw:
        async with ExportStatusClient(
            Credentials("ak", "sk"), base_url=raw.base_url, max_attempts=1
        ) as client:
            status = await client.get_status(1)
    assert status.state_name == "Done"
    assert abs(client.clock_offset - hours * 3600) < 5
    assert client.stats.clock_resyncs == 1


HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
).map(str.strip)
NEAR_DATES = st.builds(
    lambda day, month, year, hh, mm, ss, zone: (
        f"{day}, {mm:02d} {month} {year} {hh:02d}:{mm:02d}:{ss:02d} {zone}"
    ),
    st.sampled_from(["Mon", "Fri", "Sun", "Xyz"]),
    st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
    st.integers(min_value=0, max_value=99999),
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["GMT", "UTC", "+0000", "-2359", "+9999", "EST", ""]),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(date=HEADER_TEXT | NEAR_DATES)
async def test_any_date_header_gives_a_status_or_a_qianfan_error_and_no_lasting_harm(
    date: str,
) -> None:
    server = ExpiredOnce(date)
    async with raw_server(server.respond) as raw:
        async with ExportStatusClient(
            Credentials("ak", "sk"), base_url=raw.base_url, max_attempts=1, request_timeout=5
        ) as client:
            try:
                first = await client.get_status(1)
            except QianfanError:
                pass
            else:
                assert first.state_name == "Done"
            assert abs(client.clock_offset) <= MAX_CLOCK_OFFSET
            assert (await client.get_status(2)).state_name == "Done"
