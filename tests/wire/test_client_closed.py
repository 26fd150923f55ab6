"""Closed means closed: an ``ExportStatusClient`` used after ``aclose()`` raises
``ClientClosedError`` and sends nothing (before, it built a new session that nobody
closed), and a waiter whose client closed ends its waits with that error, not timeouts.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import aiohttp
import pytest
from scripted_server import MakeClient, ScriptedServer

from qianfan_export_wait import (
    ClientClosedError,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    QianfanError,
)
from qianfan_export_wait.testing import simulated_qianfan


async def test_a_closed_client_raises_and_sends_nothing(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client()
    async with client:
        assert (await client.get_status(96)).state_name == "Done"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ClientClosedError, match="closed") as raised:
            await client.get_status(96)
        with pytest.raises(ClientClosedError):
            await client.fetch_once(97)
        with pytest.raises(ClientClosedError):
            async with client:
                pass  # pragma: no cover - never entered
        gc.collect()
    assert isinstance(raised.value, QianfanError) and isinstance(raised.value, RuntimeError)
    assert client.base_url in str(raised.value)
    assert len(server.requests) == 1
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    await client.aclose()  # closing twice is fine
    assert client.closed


async def test_a_client_closed_before_its_first_request_stays_closed(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.get_status(96)
    assert server.requests == []


async def test_a_client_on_a_given_session_is_closed_but_leaves_the_session_open(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async with aiohttp.ClientSession() as session:
        client = make_client(session=session)
        await client.get_status(96)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await client.get_status(96)
        assert not session.closed
    assert len(server.requests) == 1


async def test_a_waiter_whose_client_closes_ends_its_waits_with_that_error() -> None:
    # Before: the client reopened a session under the waiter and kept polling; the waits
    # ran to their deadlines (and the new session was never closed).
    async with simulated_qianfan(exports=0) as fake:
        held = [fake.add_export(finish_after=None).export_id for _ in range(3)]
        client = fake.client()
        answered: set[object] = set()
        all_answered = asyncio.Event()

        def on_update(event: object) -> None:
            answered.add(getattr(event, "export_id", None))
            if answered >= set(held):
                all_answered.set()

        waiter = ExportWaiter(
            client,
            policy=PollPolicy(min_delay=0.05, max_delay=0.1, timeout=60),
            on_update=on_update,
        )
        handles = [waiter.submit(export_id) for export_id in held]
        await asyncio.wait_for(all_answered.wait(), 10)
        await client.aclose()
        outcomes = await asyncio.wait_for(asyncio.gather(*handles), 10)
        sent = fake.stats.total_requests
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(waiter.wait(held[0]), 10)
        await waiter.aclose()
        assert fake.stats.total_requests == sent
    assert [outcome.kind for outcome in outcomes] == [OutcomeKind.ERROR] * len(held)
    assert all(isinstance(outcome.error, ClientClosedError) for outcome in outcomes)
