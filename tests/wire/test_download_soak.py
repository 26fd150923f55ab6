"""The issue's figures: 200 exports of 1 MiB with 20% download faults all arrive intact with
nothing left behind, and a run killed mid-way then run again fetches only what is missing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tenacity import wait_none

from qianfan_export_wait.download import Downloader
from qianfan_export_wait.simulator import DownloadFaultRates, Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials, serve_in_thread, simulated_qianfan

MIB = 1024 * 1024
COUNT = 200
CHILD = Path(__file__).parents[1] / "support" / "download_child.py"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _count_entries(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*"))


def _finished_files(folder: Path) -> dict[int, Path]:
    """Export id -> its complete file (temporary files start with a dot)."""
    return {
        int(path.parent.name): path
        for path in folder.glob("*/*")
        if path.is_file() and not path.name.startswith(".")
    }


async def test_two_hundred_files_with_a_fifth_of_requests_faulty_all_arrive_intact(
    tmp_path: Path,
) -> None:
    faults = DownloadFaultRates.even(0.2)
    async with simulated_qianfan(file_sizes=(MIB, MIB), download_faults=faults) as fake:
        exports = [
            fake.add_export(finish_after=0, export_type=kind)
            for kind in ["local", "storage"] * (COUNT // 2)
        ]
        fake.configure(slow_body_delay=0.05)
        async with fake.client() as client:
            statuses = [await client.get_status(export.export_id) for export in exports]
            async with Downloader(
                tmp_path,
                credentials=fake.credentials,
                refresh=client.get_status,
                bos_endpoint=fake.base_url,
                max_concurrency=8,
                retry_wait=wait_none(),
            ) as downloader:
                records = await asyncio.gather(*(downloader.download(s) for s in statuses))
        faulty = sum(fake.stats.file_requests_by_outcome[kind] for kind in faults.as_dict())
        expected = {e.export_id: fake.simulator.file_of(e.export_id).digest() for e in exports}
    assert faulty >= 40  # the faults really happened
    assert {r.export_id: (r.bytes, r.sha256) for r in records} == {
        export_id: (digest.size, digest.sha256_hex) for export_id, digest in expected.items()
    }
    assert all(_sha256_file(Path(r.path)) == r.sha256 for r in records)
    # One folder and one file per export, nothing else (no temporary or partial file).
    assert _count_entries(tmp_path) == 2 * COUNT


def test_run_killed_mid_way_and_run_again_fetches_only_what_is_missing(tmp_path: Path) -> None:
    credentials = generate_credentials()
    simulator = Simulator(
        credentials,
        SimulatorConfig(
            file_sizes=(MIB, MIB),
            download_faults=DownloadFaultRates(slow=1.0),
            slow_body_delay=0.1,
        ),
    )
    for index in range(COUNT):
        simulator.add_export(finish_after=0, export_type=("local", "storage")[index % 2])
    dest = tmp_path / "files"
    with serve_in_thread(simulator) as base_url:
        env = {
            **os.environ,
            "QIANFAN_ACCESS_KEY": credentials.access_key,
            "QIANFAN_SECRET_KEY": credentials.secret_key,
            "QIANFAN_CONSOLE_API_BASE_URL": base_url,
            "DOWNLOAD_DEST": str(dest),
            "DOWNLOAD_COUNT": str(COUNT),
        }
        child = subprocess.Popen([sys.executable, str(CHILD)], env=env)
        try:
            while not dest.exists() or len(_finished_files(dest)) < 40:
                assert child.poll() is None, "the first run ended before it could be killed"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        finished_before = set(_finished_files(dest))
        assert child.returncode == -signal.SIGKILL
        assert 40 <= len(finished_before) < COUNT
        simulator.reset_stats()
        simulator.configure(download_faults=DownloadFaultRates())
        subprocess.run([sys.executable, str(CHILD)], env=env, check=True, timeout=120)
        by_export = dict(simulator.stats.file_requests_by_export)
        by_outcome = dict(simulator.stats.file_requests_by_outcome)
    # Each file in place is only confirmed (HTTP 304, no body); each missing one fetched.
    assert by_export == dict.fromkeys(range(1, COUNT + 1), 1)
    assert by_outcome["not_modified"] == len(finished_before)
    assert by_outcome["full"] + by_outcome["partial"] == COUNT - len(finished_before)
    files = _finished_files(dest)
    assert {export_id: simulator.file_of(export_id).digest().sha256_hex for export_id in files} == {
        export_id: _sha256_file(path) for export_id, path in files.items()
    }
    assert len(files) == COUNT
    assert not [path for path in dest.rglob(".*")]
