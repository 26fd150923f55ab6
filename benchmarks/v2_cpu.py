"""CPU per status request, V2 against V1: ``python -m benchmarks.v2_cpu URL [ROUNDS] [CALLS]``.

Run against ``qianfan-export-wait simulate --api both --exports 2000`` in another process.
Alternating rounds of ``CALLS`` ``get_status`` calls (32 at a time) through a V1 client
and a V2 client; prints the median per-call CPU of this process (``time.process_time``)
for each, and their ratio. ``--v1-only`` measures V1 alone (e.g. an older checkout)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from qianfan_export_wait import ExportStatusClient
from qianfan_export_wait.simulator.credentials import SIMULATOR_CREDENTIALS
from qianfan_export_wait.simulator.exports import export_id_str_for

CONCURRENCY = 32


async def _round(client: ExportStatusClient, ids: list[int] | list[str]) -> float:
    queue = iter(ids)

    async def caller() -> None:
        for export_id in queue:
            await client.get_status(export_id)

    start = time.process_time()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return (time.process_time() - start) / len(ids)


async def main(url: str, rounds: int, calls: int, v1_only: bool) -> dict[str, float]:
    numbers = list(range(1, calls + 1))
    texts = [export_id_str_for(n) for n in numbers]
    per_call: dict[str, list[float]] = {"v1": [], "v2": []}
    options = {} if v1_only else {"api": "v2"}  # an older checkout has no api option
    async with (
        ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=url) as v1,
        ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=url, **options) as v2,
    ):
        await _round(v1, numbers[:200])  # warm up: connections, imports, caches
        if not v1_only:
            await _round(v2, texts[:200])
        for _ in range(rounds):
            per_call["v1"].append(await _round(v1, numbers))
            if not v1_only:
                per_call["v2"].append(await _round(v2, texts))
    figures = {f"{api}_us": statistics.median(v) * 1e6 for api, v in per_call.items() if v}
    if not v1_only:
        figures["v2_over_v1"] = figures["v2_us"] / figures["v1_us"]
    return figures


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--v1-only"]
    url = arguments[0]
    rounds = int(arguments[1]) if len(arguments) > 1 else 7
    calls = int(arguments[2]) if len(arguments) > 2 else 2000
    result = asyncio.run(main(url, rounds, calls, "--v1-only" in sys.argv))
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))
