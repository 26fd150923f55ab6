"""``wait --api v2`` and ``status --api v2`` end to end: a real CLI process against the
simulator on 127.0.0.1, V2 task ids, faults on the status route, every outcome right."""

from __future__ import annotations

from hardening_support import ACCESS_KEY, SECRET_KEY, cli_env, run_cli

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.simulator import FaultRates
from qianfan_export_wait.testing import simulated_qianfan

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
EXPORTS = 300


async def test_wait_api_v2_on_hundreds_of_exports_with_faults_gets_every_outcome_right() -> None:
    async with simulated_qianfan(
        credentials=CREDENTIALS,
        api="v2",
        seed=5,
        faults=FaultRates.even(0.05),
        slow_delay=0.2,
    ) as sim:
        exports = sim.add_exports(EXPORTS, max_seconds=3.0, fail_ratio=0.2)
        truth = {e.export_id_str: "done" if e.final_state == "Done" else "failed" for e in exports}
        ids = "\n".join(truth) + "\n"
        run = await run_cli(
            "wait", "--ids-file", "-", "--endpoint", sim.base_url, "--min-delay", "0.05",
            "--max-delay", "0.3", "--request-timeout", "2", "--no-progress",
            env=cli_env(QIANFAN_EXPORT_WAIT_API="v2"), stdin=ids, timeout=120.0,
        )  # fmt: skip
        faults = sim.stats.requests_by_outcome
    assert run.code == 1, run.stderr[-2000:]  # some exports failed: exit 1, as v1
    got = {record["export_id"]: record["outcome"] for record in run.records}
    assert got == truth
    assert sum(1 for kind in ("http_500", "reset", "truncated") if faults[kind] > 0) >= 2


async def test_status_api_v2_reads_v2_states_and_refuses_numeric_ids() -> None:
    async with simulated_qianfan(credentials=CREDENTIALS, api="v2") as sim:
        done = sim.add_export(0.0)
        failed = sim.add_export(0.0, fail=True)
        run = await run_cli(
            "status", done.export_id_str, failed.export_id_str, "--api", "v2",
            "--endpoint", sim.base_url,
        )  # fmt: skip
        refused = await run_cli("status", "96", "--api", "v2", "--endpoint", sim.base_url)
        wrong_env = await run_cli(
            "status", "96", "--endpoint", sim.base_url, env=cli_env(QIANFAN_EXPORT_WAIT_API="v9")
        )
    states = {record["export_id"]: record["state"] for record in run.records}
    assert states == {done.export_id_str: "Succeeded", failed.export_id_str: "Failed"}
    assert run.code == 1
    assert refused.code == 64 and "96" in refused.stderr and "--api v2" in refused.stderr
    assert wrong_env.code == 64 and "'v9'" in wrong_env.stderr
