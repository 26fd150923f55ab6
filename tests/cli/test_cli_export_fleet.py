"""``qianfan-export-wait export`` honours the polling group's ``--redis-url`` and
``--budget`` as ``wait`` does: it used to accept both and ignore them, so an export job
ran outside the fleet's shared limit. CLI processes against the simulator on 127.0.0.1
and a real redis-server."""

from __future__ import annotations

from pathlib import Path

from hardening_support import ACCESS_KEY, SECRET_KEY, cli_env, run_cli, unused_port
from redis_support import RedisServer

from qianfan_export_wait import Credentials
from qianfan_export_wait._fleet import fleet_key
from qianfan_export_wait.simulator import DownloadFaultRates
from qianfan_export_wait.testing import simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
PASSWORD = "export-redis-pa55-do-not-leak"
FAST = ("--min-delay", "0.05", "--max-delay", "0.05", "--request-timeout", "2", "--no-progress")


async def test_export_with_an_unreachable_redis_exits_69_before_any_request() -> None:
    async with simulated_qianfan(credentials=CREDENTIALS) as sim:
        evaluation = sim.add_evaluation(finish_after=0.0)
        port = unused_port()
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        run = await run_cli(
            "export", str(evaluation.evaluation_id), "--endpoint", sim.base_url, *FAST,
            "--redis-url", url, timeout=20,
        )  # fmt: skip
        requests = sim.stats.total_requests
    assert run.code == 69, run.stderr
    assert f"127.0.0.1:{port}" in run.stderr and "cannot be reached" in run.stderr
    assert PASSWORD not in run.stderr + run.stdout
    assert (run.stdout, requests) == ("", 0)


async def test_every_status_request_of_export_books_a_fleet_slot_link_refreshes_too(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # Every link is refused: the download polls for a fresh one until it gives up. Each of
    # those polls is a status request like the others, inside the fleet's limit.
    async with simulated_qianfan(credentials=CREDENTIALS, file_sizes=(500, 900)) as sim:
        evaluation = sim.add_evaluation(finish_after=0.2)
        sim.configure(download_faults=DownloadFaultRates(forbidden=1.0))
        run = await run_cli(
            "export", str(evaluation.evaluation_id), "--endpoint", sim.base_url, *FAST,
            "--download", str(tmp_path), timeout=60,
            env=cli_env(QIANFAN_EXPORT_WAIT_REDIS_URL=redis_server.url),
        )  # fmt: skip
        calls = sim.stats.requests_by_call
        statuses = calls["v1.evaluation_status"] + calls["v1.export_status"]
        refused = sim.stats.file_requests_by_outcome["forbidden"]
    assert run.code == 1, run.stderr  # the download failed
    [record] = run.records
    assert (record["outcome"], record["stage"]) == ("done", "export")
    assert record["download_error"]["type"] == "LinkExpiredError"
    assert refused > 1  # the link was refreshed (and refused again)
    # The fleet's sequence counts the slots booked on Redis: at least one a request.
    reply = redis_server.command("HGET", fleet_key(ACCESS_KEY) + ":limiter", "seq")
    booked = int(reply.split(b"\r\n")[1])
    assert booked >= statuses, (booked, statuses, refused)


async def test_export_polls_by_the_budget_sweep_when_given_one() -> None:
    # One evaluation that never finishes, --timeout 1.5: with --budget 2 the sweep sends
    # at most 2 polls a second; the backoff alone (0.05 s) would send about 30.
    async with simulated_qianfan(credentials=CREDENTIALS) as sim:
        evaluation = sim.add_evaluation(finish_after=None)
        run = await run_cli(
            "export", str(evaluation.evaluation_id), "--endpoint", sim.base_url, *FAST,
            "--timeout", "1.5", "--budget", "2", timeout=30,
        )  # fmt: skip
        polls = sim.stats.requests_by_call["v1.evaluation_status"]
    assert run.code == 2, run.stderr  # the evaluation timed out
    [record] = run.records
    assert (record["outcome"], record["stage"]) == ("timeout", "evaluation")
    assert 1 <= polls <= 2 * 1.5 + 2, polls
