"""The simulator's QPS limit and injected faults, over real HTTP, at their seeded rates."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from tenacity import wait_none

from qianfan_export_wait import (
    ExportState,
    ResponseFormatError,
    ThrottledError,
    TransientError,
)
from qianfan_export_wait.client import EXPORT_STATUS_PATH
from qianfan_export_wait.simulator import FAULT_KINDS, FaultRates
from qianfan_export_wait.testing import (
    SimulatedQianfan,
    signed_status_headers,
    simulated_qianfan,
)

REQUESTS = 400
RATE = 0.2


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def observe(session: aiohttp.ClientSession, fake: SimulatedQianfan) -> str:
    """What one signed status request for export 1 looks like from the client side
    (a slow answer is told from a normal one by the simulator's own count)."""
    headers = signed_status_headers(fake.credentials, fake.base_url)
    slow_before = fake.stats.requests_by_outcome["slow"]
    try:
        async with session.post(
            fake.base_url + EXPORT_STATUS_PATH, data=b'{"exportID":1}', headers=headers
        ) as response:
            raw = await response.read()
            status = response.status
            declared_length = response.content_length
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return "reset"
    if status == 500:
        return "http_500"
    try:
        body = json.loads(raw)
    except ValueError:
        assert declared_length == len(raw)
        return "truncated"
    if body.get("error_code") == 336100:
        return "code_336100"
    if body.get("error_code") == 18:
        return "throttled"
    assert body["result"]["exportID"] == 1
    return "slow" if fake.stats.requests_by_outcome["slow"] > slow_before else "ok"


async def observe_many(
    session: aiohttp.ClientSession, fake: SimulatedQianfan, count: int
) -> list[str]:
    return [await observe(session, fake) for _ in range(count)]


def within_tolerance(count: int, expected_rate: float, total: int) -> bool:
    expected = expected_rate * total
    spread = 4 * (total * expected_rate * (1 - expected_rate)) ** 0.5
    return abs(count - expected) <= spread


# -- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_fault_kind_appears_at_its_configured_rate(
    session: aiohttp.ClientSession, kind: str
) -> None:
    faults = FaultRates(**{kind: RATE})
    async with simulated_qianfan(seed=7, faults=faults, slow_delay=0.005) as fake:
        fake.add_export(finish_after=0)
        seen = Counter(await observe_many(session, fake, REQUESTS))
    assert set(seen) <= {kind, "ok"}
    assert within_tolerance(seen[kind], RATE, REQUESTS), seen
    assert fake.stats.requests_by_outcome[kind] == seen[kind]


async def test_all_fault_kinds_together_keep_their_rates(
    session: aiohttp.ClientSession,
) -> None:
    async with simulated_qianfan(seed=3, faults=0.5, slow_delay=0.005) as fake:
        fake.add_export(finish_after=0)
        seen = Counter(await observe_many(session, fake, REQUESTS))
    for kind in FAULT_KINDS:
        assert within_tolerance(seen[kind], 0.1, REQUESTS), seen
    assert dict(seen) == {k: v for k, v in fake.stats.requests_by_outcome.items() if v}


async def test_same_seed_gives_the_same_fault_sequence(
    session: aiohttp.ClientSession,
) -> None:
    sequences = []
    for seed in (11, 11, 12):
        async with simulated_qianfan(seed=seed, faults=0.5, slow_delay=0.001) as fake:
            fake.add_export(finish_after=0)
            sequences.append(await observe_many(session, fake, 60))
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]


async def test_slow_fault_delays_the_normal_answer(session: aiohttp.ClientSession) -> None:
    async with simulated_qianfan(faults=FaultRates(slow=1.0), slow_delay=0.2) as fake:
        fake.add_export(finish_after=0)
        started = time.monotonic()
        outcome = await observe(session, fake)
    assert outcome == "slow"
    assert time.monotonic() - started >= 0.2


async def test_faults_can_be_switched_off_mid_run(session: aiohttp.ClientSession) -> None:
    async with simulated_qianfan(faults=FaultRates(http_500=1.0)) as fake:
        fake.add_export(finish_after=0)
        before = await observe(session, fake)
        fake.configure(faults=FaultRates())
        after = await observe(session, fake)
    assert (before, after) == ("http_500", "ok")


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("http_500", TransientError),
        ("reset", TransientError),
        ("truncated", ResponseFormatError),
        ("code_336100", TransientError),
    ],
)
async def test_client_sees_each_failing_fault_as_a_retryable_error(
    kind: str, error_type: type[Exception]
) -> None:
    async with simulated_qianfan(faults=FaultRates(**{kind: 1.0})) as fake:
        fake.add_export(finish_after=0)
        async with fake.client(max_attempts=1) as client:
            with pytest.raises(error_type):
                await client.get_status(1)


async def test_client_retries_through_occasional_faults() -> None:
    async with simulated_qianfan(seed=5, faults=0.3, slow_delay=0.001) as fake:
        fake.add_export(finish_after=0)
        async with fake.client(max_attempts=10, retry_wait=wait_none()) as client:
            statuses = [await client.get_status(1) for _ in range(20)]
    assert all(status.state is ExportState.DONE for status in statuses)


# -- QPS limit ------------------------------------------------------------------------


async def test_requests_beyond_qps_in_one_second_get_code_18_with_http_200(
    session: aiohttp.ClientSession,
) -> None:
    async with simulated_qianfan(qps=5) as fake:
        fake.add_export(finish_after=0)
        seen = Counter(await asyncio.gather(*(observe(session, fake) for _ in range(20))))
    assert seen == {"ok": 5, "throttled": 15}
    assert fake.stats.requests_by_outcome["throttled"] == 15


async def test_throttled_answer_has_the_platform_message(
    session: aiohttp.ClientSession,
) -> None:
    async with simulated_qianfan(qps=1) as fake:
        headers = signed_status_headers(fake.credentials, fake.base_url)
        for _ in range(2):
            async with session.post(
                fake.base_url + EXPORT_STATUS_PATH, data=b'{"exportID":1}', headers=headers
            ) as response:
                body = await response.json()
    assert response.status == 200
    assert body["error_code"] == 18
    assert body["error_msg"] == "Open api qps request limit reached"
    assert "Retry-After" not in response.headers


async def test_throttled_answer_carries_retry_after_when_configured() -> None:
    async with simulated_qianfan(qps=1, retry_after=1.5) as fake:
        fake.add_export(finish_after=0)
        async with fake.client(max_attempts=1) as client:
            await client.get_status(1)
            with pytest.raises(ThrottledError) as caught:
                await client.get_status(1)
    assert caught.value.code == 18
    assert caught.value.retry_after == 1.5


async def test_qps_limit_frees_up_after_a_second(session: aiohttp.ClientSession) -> None:
    async with simulated_qianfan(qps=2) as fake:
        fake.add_export(finish_after=0)
        first = [await observe(session, fake) for _ in range(3)]
        await asyncio.sleep(1.05)
        later = await observe(session, fake)
    assert (first, later) == (["ok", "ok", "throttled"], "ok")


async def test_qps_limit_can_be_raised_mid_run(session: aiohttp.ClientSession) -> None:
    async with simulated_qianfan(qps=1) as fake:
        fake.add_export(finish_after=0)
        await observe(session, fake)
        fake.configure(qps=100)
        outcomes = [await observe(session, fake) for _ in range(5)]
    assert outcomes == ["ok"] * 5


async def test_peak_request_rate_is_reported(session: aiohttp.ClientSession) -> None:
    async with simulated_qianfan(qps=3) as fake:
        fake.add_export(finish_after=0)
        await asyncio.gather(*(observe(session, fake) for _ in range(8)))
    assert fake.stats.peak_requests_per_second == 8
