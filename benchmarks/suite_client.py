"""``client``: CPU per ``get_status`` against a bare aiohttp POST + ``json()``.

Both sides use one ``aiohttp.ClientSession`` (so the same connector settings and the same
kept-alive connection), the same URL, body and headers (the bare side reuses an
Authorization the client signed, valid for 30 minutes), and one request at a time. Rounds
alternate between the two; the figure is the median of the per-round CPU ratios.

Each measurement runs in a fresh process pinned to one core (the simulator on the other):
once with the standard library's JSON, the default install and the target's figure, and
once with orjson, as the ``fast`` extra installs it. The naive side always uses
``response.json()``, the standard library.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from typing import Any

import aiohttp
from yarl import URL

from qianfan_export_wait import ExportStatusClient
from qianfan_export_wait.endpoints import EXPORT_STATUS_PATH, host_header, status_request_headers

from .common import SuiteResult, Target, make_client, percentile
from .simserver import REPO_ROOT, SimProcess

TARGET_RATIO = 1.0
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
        url = client.base_url + EXPORT_STATUS_PATH
        headers = status_request_headers(
            client.credentials, host_header(URL(client.base_url)), int(time.time())
        )
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


async def _measure_in_child(
    base_url: str, rounds: int, calls: int, *, stdlib_json: bool, cpu: int | None
) -> dict[str, list[float]]:
    """``measure`` in a fresh process (``benchmarks.cpu_worker``), so the library imports
    the JSON parser a user's install would give it."""
    command = [sys.executable, "-m", "benchmarks.cpu_worker"]
    if stdlib_json:
        command.append("--stdlib-json")
    command += ["client", base_url, str(rounds), str(calls)]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"cpu_worker client exited {process.returncode}")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    if figures.pop("fast_json") is stdlib_json:
        raise RuntimeError(f"cpu_worker used the wrong JSON parser (stdlib_json={stdlib_json})")
    return figures


def _summary(per_call: dict[str, list[float]]) -> tuple[float, dict[str, Any]]:
    ratios = [lib / bare for lib, bare in zip(per_call["library"], per_call["bare"], strict=True)]
    ratio = percentile(ratios, 0.5)
    return ratio, {
        "library_cpu_us_per_call": round(percentile(per_call["library"], 0.5) * 1e6, 1),
        "bare_aiohttp_cpu_us_per_call": round(percentile(per_call["bare"], 0.5) * 1e6, 1),
        "cpu_ratio_median": round(ratio, 3),
        "cpu_ratio_min": round(min(ratios), 3),
        "cpu_ratio_max": round(max(ratios), 3),
        "ratios": [round(r, 4) for r in ratios],
    }


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("client")
    rounds, calls = (8, 500) if quick else (30, 1000)
    # One core each for client and server, when there are two, takes the scheduler's
    # migrations out of the comparison.
    own_cpus = os.sched_getaffinity(0)
    pinned = len(own_cpus) >= 2
    client_cpu, server_cpu = sorted(own_cpus)[:2] if pinned else (None, None)
    result.metrics = {"rounds": rounds, "calls_per_round": calls}
    async with SimProcess(cpus={server_cpu} if server_cpu is not None else None) as sim:
        await sim.add(_ID_COUNT, max_seconds=0.0, fail_ratio=0.0)
        variants = [(True, "stdlib_json", "get_status CPU / naive aiohttp CPU (stdlib json)")]
        if importlib.util.find_spec("orjson") is not None:
            variants.append((False, "orjson", "the same with the fast extra's orjson"))
        else:
            result.notes.append("orjson is not installed: the fast extra was not measured")
        for stdlib_json, key, label in variants:
            per_call = await _measure_in_child(
                sim.base_url, rounds, calls, stdlib_json=stdlib_json, cpu=client_cpu
            )
            ratio, figures = _summary(per_call)
            result.metrics[key] = figures
            result.targets.append(Target(label, round(ratio, 3), TARGET_RATIO, "x"))
    if pinned:
        result.notes.append(f"client pinned to CPU {client_cpu}, simulator to CPU {server_cpu}")
    result.series = {"ratios": result.metrics["stdlib_json"]["ratios"]}
    return result
