"""The shared waiter across the wire, against the simulator on 127.0.0.1: many callers,
a wrong key, a broken strategy, a slow server, an outage, and server clock jumps."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any

import pytest
from tenacity import RetryCallState, wait_fixed

from qianfan_export_wait import (
    AuthError,
    Credentials,
    ExportFailedError,
    ExportStatusClient,
    ExportWaiter,
    OutcomeKind,
    PollPolicy,
    UnexpectedError,
)
from qianfan_export_wait.simulator import FaultRates, Simulator, SimulatorConfig
from qianfan_export_wait.testing import fast_policy, generate_credentials, simulated_qianfan

FAST = fast_policy(min_delay=0.05, max_delay=0.5, timeout=60)  # hundreds of callers


def true_kind(state: str) -> OutcomeKind:
    return {"Done": OutcomeKind.DONE, "Fail": OutcomeKind.FAILED}[state]


async def test_two_hundred_callers_over_ten_seconds_share_one_waiter() -> None:
    rng = random.Random(9)
    async with simulated_qianfan(exports=500, max_seconds=8.0, fail_ratio=0.1, seed=9) as fake:
        async with (
            fake.client() as client,
            ExportWaiter(client, policy=FAST, max_in_flight=16) as waiter,
        ):
            seen: dict[int, list[tuple[int, OutcomeKind]]] = {}

            async def caller(number: int) -> None:
                ids = [rng.randint(1, 500) for _ in range(rng.randint(1, 30))]  # duplicates too
                style = number % 4
                got: list[tuple[int, OutcomeKind]] = []
                if style == 0:
                    report = await waiter.wait_all(ids)
                    got = [(i, outcome.kind) for i, outcome in report.items()]
                elif style == 1:
                    got = [(o.export_id, o.kind) async for o in waiter.as_completed(ids)]  # type: ignore[misc]
                elif style == 2:
                    handles = [waiter.submit(i) for i in dict.fromkeys(ids)]
                    got = [(h.export_id, (await h).kind) for h in handles]  # type: ignore[misc]
                else:
                    for export_id in dict.fromkeys(ids):
                        try:
                            await waiter.wait(export_id)
                            got.append((export_id, OutcomeKind.DONE))
                        except ExportFailedError:
                            got.append((export_id, OutcomeKind.FAILED))
                seen[number] = got

            tasks = []
            for number in range(200):
                tasks.append(asyncio.ensure_future(caller(number)))
                await asyncio.sleep(10.0 / 200)
            cancelled = tasks[5::7]
            for task in cancelled:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stats = waiter.stats
        truth = {i: true_kind(fake.state_of(i)) for i in range(1, 501)}
        peak = fake.stats.peak_in_flight
    for number, got in seen.items():
        assert got and all(kind is truth[export_id] for export_id, kind in got), number
    assert len(seen) >= 200 - len(cancelled)
    assert stats.pending == 0 and stats.callers == 0 and stats.in_flight == 0
    assert peak <= 16


async def test_fifty_callers_with_a_wrong_key_cost_one_request() -> None:
    async with simulated_qianfan(exports=50, max_seconds=5.0, seed=5) as fake:
        wrong = Credentials(fake.credentials.access_key, "not-the-secret-key")
        async with ExportStatusClient(wrong, base_url=fake.base_url) as client:
            async with ExportWaiter(client, policy=FAST) as waiter:
                results = await asyncio.gather(
                    *(waiter.wait(i) for i in range(1, 51)), return_exceptions=True
                )
        requests = fake.stats.total_requests
    assert all(isinstance(result, AuthError) for result in results)
    assert requests == 1


class RaisesOnFifthCall(wait_fixed):
    def __init__(self) -> None:
        super().__init__(0.05)
        self.calls = 0

    def __call__(self, retry_state: RetryCallState) -> float:
        self.calls += 1
        if self.calls == 5:
            raise ValueError("a strategy with a bug")
        return super().__call__(retry_state)


async def test_a_strategy_that_raises_on_its_fifth_call_ends_the_wait_within_a_second() -> None:
    async with simulated_qianfan(seed=3) as fake:
        export = fake.add_export(finish_after=None)
        policy = PollPolicy(min_delay=0.05, max_delay=0.5, timeout=60, wait=RaisesOnFifthCall())
        async with fake.client() as client, ExportWaiter(client, policy=policy) as waiter:
            started = time.monotonic()
            with pytest.raises(UnexpectedError, match="a strategy with a bug"):
                await waiter.wait(export.export_id)
            took = time.monotonic() - started
    assert took < 1.0


async def test_the_cli_exits_within_its_timeout_and_the_request_timeout_on_a_slow_server() -> None:
    # 5,000 ids, every answer 2 s late: most never get a poll before --timeout 20, and
    # each must still end at its deadline, not when its turn comes.
    simulator = Simulator(
        generate_credentials(),
        SimulatorConfig(seed=4, faults=FaultRates(slow=1.0), slow_delay=2.0),
    )
    for _ in range(5000):
        simulator.hold(simulator.add_export(finish_after=None).export_id)
    async with simulator.serve() as base_url:
        env = {
            **os.environ,
            "QIANFAN_ACCESS_KEY": simulator.credentials.access_key,
            "QIANFAN_SECRET_KEY": simulator.credentials.secret_key,
            "QIANFAN_CONSOLE_API_BASE_URL": base_url,
        }
        ids = "\n".join(str(i) for i in range(1, 5001))
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qianfan_export_wait",
            "wait",
            "--ids-file",
            "-",
            "--timeout",
            "20",
            "--request-timeout",
            "5",
            "--no-progress",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stdout, stderr = await process.communicate(ids.encode())
        took = time.monotonic() - started
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert process.returncode == 2, stderr.decode()[-2000:]
    assert len(lines) == 5000
    assert {line["outcome"] for line in lines} == {"timeout"}
    assert took < 20 + 5 + 3  # the timeout, one request timeout, and start-up


async def test_a_sixty_second_outage_is_one_probe_at_a_time_then_everyone_at_once() -> None:
    simulator = Simulator(generate_credentials(), SimulatorConfig(seed=6))
    for _ in range(2000):
        simulator.hold(simulator.add_export(finish_after=None).export_id)
    policy = PollPolicy(min_delay=1.0, max_delay=5.0, timeout=None)
    serving = simulator.serve()
    base_url = await serving.__aenter__()
    port = int(base_url.rsplit(":", 1)[1])
    client = ExportStatusClient(simulator.credentials, base_url=base_url, request_timeout=2)
    async with client, ExportWaiter(client, policy=policy) as waiter:
        pending = asyncio.ensure_future(_drain(waiter.as_completed(range(1, 2001))))
        for _ in range(600):  # every export polled at least once (however loaded the machine)
            if simulator.stats.total_requests >= 2000:
                break
            await asyncio.sleep(0.1)
        assert simulator.stats.total_requests >= 2000
        await serving.__aexit__(None, None, None)  # connections are refused for 60 s
        before = waiter.stats.requests
        await asyncio.sleep(60.0)
        during = waiter.stats.requests - before
        unavailable_for = waiter.stats.unavailable_for
        simulator.reset_stats()
        for export_id in range(1, 2001):
            simulator.complete(export_id)
        async with simulator.serve("127.0.0.1", port):
            back_at = time.monotonic()
            outcomes = await asyncio.wait_for(pending, 60)
            answered = simulator.stats.first_answered_at_by_export
    assert unavailable_for is not None and unavailable_for > 50
    assert during <= 100  # not 2,000 exports each retrying alone
    assert {outcome.kind for outcome in outcomes} == {OutcomeKind.DONE}
    assert len(outcomes) == 2000
    lags = sorted(answered[i] - back_at for i in range(1, 2001))
    assert lags[int(0.99 * len(lags))] < 15.0


async def _drain(stream: Any) -> list[Any]:
    return [outcome async for outcome in stream]


@pytest.mark.parametrize("jump", [-900.0, 7200.0])
async def test_a_server_clock_that_jumps_mid_run_loses_nothing(jump: float) -> None:
    async with simulated_qianfan(exports=2000, max_seconds=4.0, fail_ratio=0.1, seed=7) as fake:
        async with (
            fake.client() as client,
            ExportWaiter(client, policy=FAST, max_in_flight=64) as waiter,
        ):
            run = asyncio.ensure_future(waiter.wait_all(range(1, 2001)))
            await asyncio.sleep(1.5)
            fake.configure(clock_skew=jump)
            report = await run
            resyncs = client.stats.clock_resyncs
        truth = {i: true_kind(fake.state_of(i)) for i in range(1, 2001)}
    assert {i: outcome.kind for i, outcome in report.items()} == truth
    assert report.auth_error is None
    assert 1 <= resyncs <= 3
