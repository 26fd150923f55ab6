"""The waiter across the wire: against the simulator on 127.0.0.1, with thousands of ids,
faults, a rate limit, unknown ids, bad credentials and cancellation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qianfan_export_wait import (
    AuthError,
    Credentials,
    ExportStatusClient,
    ExportWaiter,
    InvalidRequestError,
    OutcomeKind,
    wait_for_exports,
)
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import fast_policy, simulated_qianfan

FAST = fast_policy(min_delay=0.05, max_delay=0.5)  # thousands of ids: no faster


def true_kind(state: str) -> OutcomeKind:
    return {"Done": OutcomeKind.DONE, "Fail": OutcomeKind.FAILED}[state]


async def test_thousands_of_exports_all_end_in_their_true_state() -> None:
    async with simulated_qianfan(exports=2000, max_seconds=3.0, fail_ratio=0.1, seed=1) as fake:
        async with fake.client() as client:
            report = await ExportWaiter(client, policy=FAST, max_in_flight=64).wait_all(
                range(1, 2001)
            )
        truth = {i: true_kind(fake.state_of(i)) for i in range(1, 2001)}
    assert {i: outcome.kind for i, outcome in report.items()} == truth
    assert len(report.failed) == 200
    for outcome in report.done:
        assert outcome.status is not None and outcome.status.export_id == outcome.export_id


async def test_string_ids_are_looked_up_by_export_id_str() -> None:
    async with simulated_qianfan(exports=20, max_seconds=0.5, seed=2) as fake:
        names = [fake.simulator.export(i).export_id_str for i in range(1, 21)]
        async with fake.client() as client:
            report = await ExportWaiter(client, policy=FAST).wait_all(names)
    assert report.ok
    assert [outcome.status.export_id_str for outcome in report.done] == names  # type: ignore[union-attr]


async def test_with_twenty_percent_faults_no_export_is_lost_or_reported_twice() -> None:
    async with simulated_qianfan(
        exports=600, max_seconds=2.0, fail_ratio=0.1, faults=0.2, slow_delay=0.3, seed=3
    ) as fake:
        async with fake.client(request_timeout=2.0) as client:
            waiter = ExportWaiter(client, policy=FAST, max_in_flight=32)
            seen = [outcome async for outcome in waiter.as_completed(range(1, 601))]
        truth = {i: true_kind(fake.state_of(i)) for i in range(1, 601)}
        faults = {
            kind: count
            for kind, count in fake.stats.requests_by_outcome.items()
            if kind in ("http_500", "reset", "truncated", "code_336100", "slow") and count
        }
    assert sorted(outcome.export_id for outcome in seen) == list(range(1, 601))
    assert {outcome.export_id: outcome.kind for outcome in seen} == truth
    assert set(faults) == {"http_500", "reset", "truncated", "code_336100", "slow"}
    assert waiter.stats.retries > 0


async def test_unknown_ids_become_errors_and_the_others_finish() -> None:
    async with simulated_qianfan(exports=50, max_seconds=0.5, seed=4) as fake:
        async with fake.client() as client:
            report = await ExportWaiter(client, policy=FAST).wait_all(
                [*range(1, 51), 9999, "amemt-doesnotexist"]
            )
    assert len(report.done) == 50
    assert [outcome.export_id for outcome in report.errors] == [9999, "amemt-doesnotexist"]
    assert all(isinstance(o.error, InvalidRequestError) for o in report.errors)
    assert report[9999].error.code == 500001  # type: ignore[union-attr]


async def test_a_wrong_secret_key_stops_the_wait_after_a_handful_of_requests() -> None:
    async with simulated_qianfan(exports=500, max_seconds=5.0, seed=5) as fake:
        wrong = Credentials(fake.credentials.access_key, "not-the-secret-key")
        async with ExportStatusClient(wrong, base_url=fake.base_url) as client:
            report = await ExportWaiter(client, policy=FAST, max_in_flight=64).wait_all(
                range(1, 501)
            )
        requests = fake.stats.total_requests
    assert isinstance(report.auth_error, AuthError)
    assert report.auth_error.bce_error_code == "SignatureDoesNotMatch"
    assert len(report.errors) == 500
    assert requests <= 3


async def test_a_fixed_qps_below_the_limit_is_never_throttled() -> None:
    async with simulated_qianfan(exports=100, max_seconds=1.0, qps=50, seed=6) as fake:
        async with fake.client() as client:
            waiter = ExportWaiter(client, policy=FAST, qps=40)
            report = await waiter.wait_all(range(1, 101))
        throttled = fake.stats.requests_by_outcome.get("throttled", 0)
    assert report.ok
    assert throttled == 0


async def test_adaptive_rate_keeps_throttling_rare_against_an_unknown_limit() -> None:
    async with simulated_qianfan(exports=400, max_seconds=4.0, qps=100, seed=7) as fake:
        async with fake.client() as client:
            waiter = ExportWaiter(client, policy=FAST, max_in_flight=32)
            report = await waiter.wait_all(range(1, 401))
        by_outcome = fake.stats.requests_by_outcome
        total = fake.stats.total_requests
    assert report.ok
    # A run of ~600 requests in real time: slow start's first throttles weigh a lot, and
    # a busy machine shifts them (6.3-6.5% seen on 3.13 in CI and on the unchanged base
    # under load). The steady-state share is measured by benchmarks' throttle suite.
    assert by_outcome.get("throttled", 0) / total <= 0.08


async def test_as_completed_reports_exports_as_they_finish() -> None:
    async with simulated_qianfan(seed=8) as fake:
        slow = fake.add_export(finish_after=None)
        fake.hold(slow.export_id)
        quick = fake.add_export(finish_after=0.1)
        async with fake.client() as client:
            waiter = ExportWaiter(client, policy=FAST)
            stream = waiter.as_completed([slow.export_id, quick.export_id])
            first = await stream.__anext__()
            assert first.export_id == quick.export_id
            fake.complete(slow.export_id)
            second = await stream.__anext__()
            await stream.aclose()
    assert second.export_id == slow.export_id
    assert second.kind is OutcomeKind.DONE


def is_waiter_or_client_task(task: asyncio.Task[object]) -> bool:
    """The simulator's own handler tasks may still be winding down; ours must not be."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return name.startswith(("_Run.", "ExportWaiter.", "ExportStatusClient."))


async def test_cancelling_wait_all_mid_request_leaves_nothing_running() -> None:
    async with simulated_qianfan(seed=9, slow_delay=5.0) as fake:
        for _ in range(20):
            fake.hold(fake.add_export(finish_after=None).export_id)
        fake.configure(faults=FaultRates(slow=1.0))
        async with fake.client() as client:
            task = asyncio.ensure_future(ExportWaiter(client, policy=FAST).wait_all(range(1, 21)))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ours = [t for t in asyncio.all_tasks() if is_waiter_or_client_task(t)]
            assert ours == []


CANCEL_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from qianfan_export_wait import ExportWaiter, PollPolicy
    from qianfan_export_wait.simulator import FaultRates
    from qianfan_export_wait.testing import simulated_qianfan

    async def main():
        async with simulated_qianfan(seed=1, slow_delay=5.0) as fake:
            for _ in range(50):
                fake.hold(fake.add_export(finish_after=None).export_id)
            async with fake.client() as client:
                waiter = ExportWaiter(client, policy=PollPolicy(min_delay=0.05, max_delay=0.2))
                task = asyncio.ensure_future(waiter.wait_all(range(1, 51)))
                await asyncio.sleep(0.3)
                fake.configure(faults=FaultRates(slow=1.0))
                await asyncio.sleep(0.3)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                count = 0
                stream = waiter.as_completed(range(1, 51))
                fake.complete(7)
                fake.configure(faults=FaultRates())
                async for outcome in stream:
                    count += 1
                    break
                await stream.aclose()
        print("clean", count)

    asyncio.run(main())
    """
)


def test_cancellation_leaves_no_warnings_in_dev_mode(tmp_path: Path) -> None:
    script = tmp_path / "cancel.py"
    script.write_text(CANCEL_SCRIPT)
    env = {**os.environ, "PYTHONDEVMODE": "1"}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean 1"
    for warning in ("Unclosed", "was destroyed", "never awaited", "Warning", "Error"):
        assert warning not in done.stderr


async def test_wait_for_exports_uses_a_given_client_and_leaves_it_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with simulated_qianfan(exports=5, max_seconds=0.3, fail_ratio=0.0, seed=4) as fake:
        async with fake.client() as client:
            report = await wait_for_exports(
                [1, 2, 3], client=client, min_delay=0.05, max_delay=0.2, timeout=10
            )
            assert report.ok
            assert (await client.get_status(4)).export_id == 4  # still open
        # Without one, it builds its own from the environment, and closes it.
        monkeypatch.setenv("QIANFAN_ACCESS_KEY", fake.credentials.access_key)
        monkeypatch.setenv("QIANFAN_SECRET_KEY", fake.credentials.secret_key)
        report = await wait_for_exports(
            [5], base_url=fake.base_url, min_delay=0.05, max_delay=0.2, timeout=10
        )
    assert list(report) == [5] and report.ok
