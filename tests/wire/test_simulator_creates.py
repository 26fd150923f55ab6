"""Creates under load: 200 evaluations of both generations created at once, through
throttling and every fault kind, must leave the simulator's count of exports per evaluation
exactly what the answers imply, so tests of the export job can trust it."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
from sim_v2_support import Reply, Running, running_simulator
from yarl import URL

from qianfan_export_wait.simulator import FaultRates, SimEvaluation

EVALUATIONS = 200


def made_an_export(reply: Reply | None) -> bool:
    """Whether a create's answer (``None``: the connection was reset) implies an export
    now exists: an answer with its id, or an answer lost after it was made."""
    if reply is None:
        return True  # reset: the answer was lost after the export was made
    if isinstance(reply.payload, str):
        return reply.status == 200  # truncated (made) rather than the plain HTTP 500
    return "result" in reply.payload


async def create_once(sim: Running, evaluation: SimEvaluation, v2: bool) -> Reply | None:
    try:
        if v2:
            return await sim.v2_create(evaluation.evaluation_id_str)
        return await sim.v1_create(evaluation.evaluation_id)
    except aiohttp.ClientError:
        return None


def export_id_of(reply: Reply | None) -> str | int | None:
    if reply is None or isinstance(reply.payload, str) or "result" not in reply.payload:
        return None
    result = reply.payload["result"]
    return result["taskId"] if "taskId" in result else result["exportID"]


async def test_concurrent_creates_through_faults_are_counted_exactly() -> None:
    async with running_simulator(
        seed=11,
        qps=150,
        qps_window="fixed",
        create_faults=FaultRates.even(0.4),
        slow_delay=0.05,
        file_sizes=(1000, 5000),
        created_export_seconds=5.0,
    ) as sim:
        evaluations = sim.simulator.add_evaluations(EVALUATIONS, max_seconds=0.0, fail_ratio=0.0)
        generation_v2 = {e.evaluation_id: index % 2 == 1 for index, e in enumerate(evaluations)}
        made: dict[int, int] = dict.fromkeys(generation_v2, 0)
        known_ids: dict[int, str | int] = {}
        pending = list(evaluations)
        rounds = 0
        while pending:
            rounds += 1
            assert rounds < 60, f"{len(pending)} evaluations never got an export"
            replies = await asyncio.gather(
                *(create_once(sim, e, generation_v2[e.evaluation_id]) for e in pending)
            )
            for evaluation, reply in zip(pending, replies, strict=True):
                if made_an_export(reply):
                    made[evaluation.evaluation_id] += 1
                export_id = export_id_of(reply)
                if export_id is not None:
                    known_ids[evaluation.evaluation_id] = export_id
            # Only an answer that says nothing was made is safe to retry.
            pending = [e for e in pending if made[e.evaluation_id] == 0]
            sim.clock.advance(1.0)  # the next QPS window

        assert sim.simulator.creates_by_evaluation() == made
        assert set(made.values()) == {1}
        outcomes = sim.simulator.stats.requests_by_outcome
        assert outcomes["throttled"] > 0
        for kind in ("http_500", "code_336100", "reset", "truncated", "slow"):
            assert outcomes[kind] > 0, kind

        # Every export whose id came back finishes and serves the file it claims.
        sim.clock.advance(5.0)
        sim.simulator.configure(qps=None)
        for evaluation_id, export_id in known_ids.items():
            if generation_v2[evaluation_id]:
                result = (await sim.v2_export(export_id)).payload["result"]
                assert result["state"] == "Succeeded"
            else:
                result = (await sim.v1_export(export_id)).payload["result"]
                assert result["state"] == "Done"
            async with sim.session.get(URL(result["downloadUrl"], encoded=True)) as response:
                body = await response.read()
            digest = sim.simulator.file_of(export_id).digest()
            assert hashlib.sha256(body).hexdigest() == digest.sha256_hex
        assert len(known_ids) < EVALUATIONS  # some answers were lost for good
