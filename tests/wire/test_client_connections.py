"""The client's connections: the pool follows the waiter's ``max_in_flight``, a caller's
session keeps its own limits (and the waiter says so), and waiting for a free connection
never counts as request time."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from qianfan_export_wait import ExportWaiter
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import SimulatedQianfan, fast_policy, simulated_qianfan

POLICY = fast_policy(min_delay=0.05, max_delay=0.2)  # hundreds in flight


async def held_exports(fake: SimulatedQianfan, count: int) -> None:
    for _ in range(count):
        fake.hold(fake.add_export(finish_after=None).export_id)


async def test_the_pool_grows_to_the_waiters_max_in_flight() -> None:
    async with simulated_qianfan(slow_delay=1.0) as fake:
        await held_exports(fake, 250)
        async with fake.client() as client:
            assert client.connection_limit == 100
            async with ExportWaiter(client, policy=POLICY, max_in_flight=250) as waiter:
                assert client.connection_limit == 250
                fake.configure(faults=FaultRates(slow=1.0))
                stream = waiter.as_completed(range(1, 251))
                async with stream:
                    # No fixed sleep: a loaded machine may take a while to open them.
                    for _ in range(600):
                        if fake.stats.peak_in_flight > 200:
                            break
                        await asyncio.sleep(0.05)
        peak = fake.stats.peak_in_flight
    assert peak > 200  # far past the 100 a fixed pool would allow


async def test_a_callers_session_keeps_its_limit_and_the_waiter_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with simulated_qianfan(slow_delay=0.3) as fake:
        await held_exports(fake, 40)
        fake.configure(faults=FaultRates(slow=1.0))
        connector = aiohttp.TCPConnector(limit=10)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with fake.client(session=session) as client:
                waiter = ExportWaiter(client, policy=POLICY, max_in_flight=64)
                assert waiter.stats.max_in_flight == 10
                async with waiter, waiter.as_completed(range(1, 41)):
                    await asyncio.sleep(1.0)
        peak = fake.stats.peak_in_flight
    assert peak == 10
    assert "allows 10" in caplog.text


async def test_waiting_for_a_free_connection_is_not_request_time() -> None:
    # Two connections, twelve requests of 0.4 s each: the last waits 2 s for a connection,
    # far past the 1 s request timeout, and still none times out.
    async with simulated_qianfan(exports=12, max_seconds=0.0, slow_delay=0.4) as fake:
        fake.configure(faults=FaultRates(slow=1.0))
        async with fake.client(connection_limit=2, request_timeout=1.0, max_attempts=1) as client:
            statuses = await asyncio.gather(*(client.get_status(i) for i in range(1, 13)))
        peak = fake.stats.peak_in_flight
    assert {status.state_name for status in statuses} == {"Done"}
    assert client.stats.transient_errors == 0
    assert peak == 2


async def test_an_explicit_connection_limit_is_kept_and_reported_to_the_waiter() -> None:
    async with simulated_qianfan() as fake:
        async with fake.client(connection_limit=8) as client:
            waiter = ExportWaiter(client, max_in_flight=64)
            assert client.connection_limit == 8
            assert waiter.stats.max_in_flight == 8
