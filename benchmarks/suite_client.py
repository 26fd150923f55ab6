"""``client``: CPU per ``get_status`` against a bare aiohttp POST + ``json()``.

Both sides use one ``aiohttp.ClientSession`` (so the same connector settings and the same
kept-alive connection), the same URL, body and headers (the bare side reuses an
Authorization the client signed, valid for 30 minutes), and one request at a time. Rounds
alternate between the two; the figure is the median of the per-round CPU ratios.
"""

from __future__ import annotations

import os
import time

import aiohttp

from qianfan_export_wait import ExportStatusClient

from .common import SuiteResult, Target, make_client, percentile
from .simserver import SimProcess

TARGET_RATIO = 1.10
_ID_COUNT = 50


async def _time_library(client: ExportStatusClient, ids: list[int]) -> float:
    started = time.process_time()
    for export_id in ids:
        await client.get_status(export_id)
    return time.process_time() - started


async def _time_waiter_path(client: ExportStatusClient, ids: list[int]) -> float:
    started = time.process_time()
    for export_id in ids:
        await client.fetch_once(export_id)
    return time.process_time() - started


async def _time_bare(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], ids: list[int]
) -> float:
    """The naive client: the session reused, ``json=``, ``await response.json()``."""
    timeout = aiohttp.ClientTimeout(total=10.0)
    started = time.process_time()
    for export_id in ids:
        async with session.post(
            url, json={"exportID": export_id}, headers=headers, timeout=timeout
        ) as response:
            await response.json()
    return time.process_time() - started


async def measure(base_url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """Per-round CPU seconds per call for the library and the bare floor."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100), raise_for_status=False
    )
    library_per_call: list[float] = []
    bare_per_call: list[float] = []
    async with session, make_client(base_url, session=session) as client:
        url = str(client._url)
        headers = dict(client._signed_headers())
        ids = [index % _ID_COUNT + 1 for index in range(calls)]
        await _time_library(client, ids[:50])
        await _time_bare(session, url, headers, ids[:50])
        for round_number in range(rounds):
            # Alternate which side goes first so drift does not favour one.
            if round_number % 2:
                bare = await _time_bare(session, url, headers, ids)
                library = await _time_library(client, ids)
            else:
                library = await _time_library(client, ids)
                bare = await _time_bare(session, url, headers, ids)
            library_per_call.append(library / calls)
            bare_per_call.append(bare / calls)
    return {"library": library_per_call, "bare": bare_per_call}


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("client")
    rounds, calls = (8, 500) if quick else (30, 1000)
    # One core each for client and server, when there are two, takes the scheduler's
    # migrations out of the comparison.
    own_cpus = os.sched_getaffinity(0)
    pinned = len(own_cpus) >= 2
    client_cpu, server_cpu = sorted(own_cpus)[:2] if pinned else (0, 0)
    async with SimProcess(cpus={server_cpu} if pinned else None) as sim:
        await sim.add(_ID_COUNT, max_seconds=0.0, fail_ratio=0.0)
        if pinned:
            os.sched_setaffinity(0, {client_cpu})
        try:
            per_call = await measure(sim.base_url, rounds, calls)
        finally:
            os.sched_setaffinity(0, own_cpus)
    if pinned:
        result.notes.append(f"client pinned to CPU {client_cpu}, simulator to CPU {server_cpu}")
    ratios = [lib / bare for lib, bare in zip(per_call["library"], per_call["bare"], strict=True)]
    ratio = percentile(ratios, 0.5)
    result.metrics = {
        "rounds": rounds,
        "calls_per_round": calls,
        "library_cpu_us_per_call": round(percentile(per_call["library"], 0.5) * 1e6, 1),
        "bare_aiohttp_cpu_us_per_call": round(percentile(per_call["bare"], 0.5) * 1e6, 1),
        "cpu_ratio_median": round(ratio, 3),
        "cpu_ratio_min": round(min(ratios), 3),
        "cpu_ratio_max": round(max(ratios), 3),
    }
    result.targets.append(
        Target("get_status CPU / bare aiohttp CPU", round(ratio, 3), TARGET_RATIO, "x")
    )
    result.series = {"ratios": [round(r, 4) for r in ratios]}
    return result
