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
import time

import pytest
from aiohttp import web
from hardening_support import recording_server

from qianfan_export_wait import (
    AuthError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
)
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
    assert len(server.received) == 2


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
