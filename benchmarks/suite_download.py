"""``download``: throughput and CPU per MB of ``Downloader`` against a bare aiohttp stream to
disk, in the same run; peak RSS for a small and a big file.

Both sides fetch the same presigned links from the simulator in a child process, with one
``aiohttp`` session each, ``max_concurrency`` files at once, into a fresh folder per round.
The bare side streams ``iter_chunked(256 KiB)`` into a file and closes it: no status
check, no hashing, no fsync, no rename. The library does all of that (MD5 + SHA-256 of
every byte, fsync, atomic rename). Rounds alternate; figures are medians of rounds.
Memory: a child process downloads one file with ``client.download`` and reports its peak
RSS (``ru_maxrss``), for a 1 MiB file and a big one; flat memory means the two are close.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from tenacity import wait_none
from yarl import URL

from qianfan_export_wait import ExportStatus
from qianfan_export_wait.download import Downloader

from .common import SuiteResult, Target, make_client, percentile
from .simserver import REPO_ROOT, SimProcess

MIB = 1024 * 1024
_CONCURRENCY = 4
_CHILD = """
import asyncio, json, resource, sys, tempfile
from qianfan_export_wait.client import ExportStatusClient
from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS

async def main(base_url, export_id):
    async with ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=base_url) as client:
        status = await client.get_status(export_id)
        with tempfile.TemporaryDirectory() as folder:
            record = await client.download(status, folder)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"bytes": record.bytes, "peak_rss_mb": peak_kib / 1024}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _library(statuses: list[ExportStatus], folder: Path) -> None:
    async with Downloader(folder, max_concurrency=_CONCURRENCY, retry_wait=wait_none()) as dl:
        await asyncio.gather(*(dl.download(status) for status in statuses))


async def _bare(statuses: list[ExportStatus], folder: Path) -> None:
    slots = asyncio.Semaphore(_CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=_CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(index: int, url: str) -> None:
            async with slots, session.get(URL(url, encoded=True)) as response:
                with open(folder / f"{index}.bin", "wb") as file:  # noqa: ASYNC230 - the floor
                    async for piece in response.content.iter_chunked(256 * 1024):
                        file.write(piece)

        await asyncio.gather(
            *(fetch(index, status.download_url or "") for index, status in enumerate(statuses))
        )


async def _timed(side: str, statuses: list[ExportStatus], folder: Path) -> tuple[float, float]:
    await asyncio.to_thread(folder.mkdir)
    wall, cpu = time.monotonic(), time.process_time()
    await (_library if side == "library" else _bare)(statuses, folder)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    await asyncio.to_thread(shutil.rmtree, folder)
    return wall, cpu


def _peak_rss(base_url: str, export_id: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, base_url, str(export_id)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    answer: dict[str, float] = json.loads(done.stdout)
    return answer


async def run(quick: bool) -> SuiteResult:
    """Run the suite."""
    result = SuiteResult("download")
    files, size, rounds, big = (16, 4 * MIB, 4, 64 * MIB) if quick else (40, 16 * MIB, 8, 512 * MIB)
    async with SimProcess(file_sizes=(size, size)) as sim:
        ids = await sim.add(files, max_seconds=0.0, fail_ratio=0.0)
        async with make_client(sim.base_url) as client:
            statuses = [await client.get_status(export_id) for export_id in ids]
        megabytes = files * size / MIB
        figures: dict[str, list[tuple[float, float]]] = {"library": [], "bare": []}
        with tempfile.TemporaryDirectory() as scratch:
            for round_number in range(rounds + 1):
                order = ("library", "bare") if round_number % 2 else ("bare", "library")
                for side in order:
                    measured = await _timed(
                        side, statuses, Path(scratch) / f"{side}-{round_number}"
                    )
                    if round_number:  # round 0 warms the simulator's file cache
                        figures[side].append(measured)
        memory = {}
        for label, file_size in (("1MiB", MIB), (f"{big // MIB}MiB", big)):
            await sim.configure(file_sizes=[file_size, file_size])
            (export_id,) = await sim.add(1, max_seconds=0.0, fail_ratio=0.0)
            memory[label] = _peak_rss(sim.base_url, export_id)["peak_rss_mb"]

    def median(side: str, index: int) -> float:
        return percentile([pair[index] for pair in figures[side]], 0.5)

    library_cpu_ms = median("library", 1) / megabytes * 1000
    bare_cpu_ms = median("bare", 1) / megabytes * 1000
    cpu_ratios = [
        lib[1] / bare[1] for lib, bare in zip(figures["library"], figures["bare"], strict=True)
    ]
    growth = memory[f"{big // MIB}MiB"] - memory["1MiB"]
    result.metrics = {
        "files_per_round": files,
        "file_mib": size // MIB,
        "rounds": rounds,
        "library_mb_per_s": round(megabytes / median("library", 0), 1),
        "bare_mb_per_s": round(megabytes / median("bare", 0), 1),
        "library_cpu_ms_per_mb": round(library_cpu_ms, 3),
        "bare_cpu_ms_per_mb": round(bare_cpu_ms, 3),
        "cpu_ratio_median": round(percentile(cpu_ratios, 0.5), 3),
        "peak_rss_mb": {label: round(value, 1) for label, value in memory.items()},
    }
    result.targets.append(
        Target(
            f"peak RSS growth from a 1 MiB to a {big // MIB} MiB file",
            round(growth, 1),
            16.0,
            "MB",
        )
    )
    result.targets.append(
        Target(
            "library CPU per MB / bare aiohttp",
            round(percentile(cpu_ratios, 0.5), 3),
            float("inf"),
            "x",
        )
    )
    result.notes.append(
        "library: status check, MD5 + SHA-256 of every byte, fsync, atomic rename; bare: write only"
    )
    result.series = {
        side: [[round(wall, 4), round(cpu, 4)] for wall, cpu in pairs]
        for side, pairs in figures.items()
    }
    return result
