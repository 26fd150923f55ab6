"""Hostile storage servers and hostile inputs (issue 21): a dripping body ends at the stall
timeout, an endless one at ``max_bytes``, a caller's deadline is kept, only
``DownloadError`` subclasses come out, and a closed downloader stays closed. Every server
here is a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import socket
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from statuses import make_status
from tenacity import wait_none

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.download import Downloader, DownloadRecord, verify_record_on_disk
from qianfan_export_wait.errors import (
    ClientClosedError,
    DownloaderClosedError,
    DownloadError,
    DownloadTimeoutError,
    DownloadTooLargeError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_get("/{name}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        server = await _serve(handler)
        servers.append(server)
        return str(server.make_url("/export.csv"))

    yield start
    for server in servers:
        await server.close()


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def _downloader(dest: Path, **options: Any) -> Downloader:
    options.setdefault("retry_wait", wait_none())
    return Downloader(dest, **options)


async def test_dripping_body_ends_at_the_stall_timeout_and_is_not_retried(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """Before the fix a body of one byte at a time held the download as long as each byte
    came within the 60 s read timeout (240 s for the issue's ``--timeout 10`` run)."""
    requests: list[str] = []

    async def drip(request: web.Request) -> web.StreamResponse:
        requests.append(request.headers.get("Range", ""))
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        for _ in range(100_000):
            await response.write(b"x")
            await asyncio.sleep(0.01)
        return response

    url = await serve(drip)
    async with _downloader(tmp_path, stall_timeout=0.3) as downloader:
        async with asyncio.timeout(20):  # a hang guard only: the old code dripped on
            with pytest.raises(DownloadTimeoutError) as caught:
                await downloader.download(make_status(7, url=url, log_id=None))
    assert caught.value.code == "Stalled"
    assert caught.value.reason == "timeout"
    assert requests == [""]


async def test_endless_body_stops_at_max_bytes_and_leaves_nothing(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        piece = b"y" * 65536
        while True:
            await response.write(piece)

    url = await serve(endless)
    async with _downloader(tmp_path, max_bytes=1_000_000) as downloader:
        async with asyncio.timeout(20):  # hang guard: the old code read on for ever
            with pytest.raises(DownloadTooLargeError, match="max_bytes=1000000"):
                await downloader.download(make_status(7, url=url, log_id=None))
    assert _files(tmp_path) == []


async def test_declared_size_over_max_bytes_is_refused_before_a_byte_is_written(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"z" * 5000)

    url = await serve(big)
    async with _downloader(tmp_path, max_bytes=4999) as downloader:
        with pytest.raises(DownloadTooLargeError, match="5000 bytes"):
            await downloader.download(make_status(7, url=url, log_id=None))
    async with _downloader(tmp_path, max_bytes=5000) as downloader:
        record = await downloader.download(make_status(7, url=url, log_id=None))
    assert record.bytes == 5000


async def test_callers_deadline_ends_a_silent_transfer_and_keeps_its_partial(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        body = b"q" * 1000
        response = web.StreamResponse(
            headers={"Content-Length": "1000", "ETag": f'"{hashlib.md5(body).hexdigest()}"'}
        )
        await response.prepare(request)
        await response.write(body[:10])
        await asyncio.sleep(3600)
        return response

    url = await serve(silent)
    loop = asyncio.get_running_loop()
    async with _downloader(tmp_path, stall_timeout=3600) as downloader:
        async with asyncio.timeout(20):  # hang guard
            with pytest.raises(DownloadTimeoutError) as caught:
                await downloader.download(
                    make_status(7, url=url, log_id=None), deadline=loop.time() + 0.3
                )
    assert caught.value.code == "Deadline"
    assert caught.value.export_id == 7
    part = tmp_path / "7" / ".export.csv.part"
    assert part.read_bytes() == b"q" * 10  # kept: a later run resumes it


async def test_deep_json_note_is_dropped_not_a_recursion_error(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """Before the fix the note's ``json.loads`` raised a bare ``RecursionError``."""
    body = b"the file\n"

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body)

    url = await serve(plain)
    folder = tmp_path / "7"
    folder.mkdir()
    (folder / ".export.csv.part").write_bytes(b"junk")
    (folder / ".export.csv.part.json").write_text("[" * 100_000 + "]" * 100_000)
    async with _downloader(tmp_path) as downloader:
        record = await downloader.download(make_status(7, url=url, log_id=None))
    assert (folder / "export.csv").read_bytes() == body
    assert record.sha256 == hashlib.sha256(body).hexdigest()


async def test_a_corrupt_zip_is_an_unsafe_archive_error_not_bad_zip_file(
    serve: Callable[[Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """Before the fix a member whose CRC does not match raised a bare ``BadZipFile``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("data.csv", b"a,b\n" * 100)
    packed = bytearray(buffer.getvalue())
    packed[packed.index(b"a,b\n") + 1] ^= 0xFF  # the stored bytes no longer match the CRC

    async def zipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bytes(packed))

    server = await serve(zipped)
    url = server.replace("export.csv", "export.zip")
    async with _downloader(tmp_path, extract=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(make_status(7, url=url, log_id=None))
    assert isinstance(caught.value.__cause__, zipfile.BadZipFile)
    assert not (tmp_path / "7" / "export").exists()


async def test_a_folder_that_cannot_be_made_is_a_download_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    async with _downloader(blocker / "below") as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(
                make_status(7, url="http://127.0.0.1:9/export.csv", log_id=None)
            )
    assert isinstance(caught.value.__cause__, OSError)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    export_type=st.sampled_from(["local", "storage", "other", ""]),
    volume_id=_TEXT,
    export_path=_TEXT,
    url_tail=_TEXT,
    export_id=st.integers(min_value=1, max_value=2**63 - 1),
)
def test_any_status_gives_a_record_or_a_download_error(
    tmp_path_factory: pytest.TempPathFactory,
    export_type: str,
    volume_id: str,
    export_path: str,
    url_tail: str,
    export_id: int,
) -> None:
    """Whatever a status names, ``download`` raises only ``DownloadError`` subclasses;
    every request goes to a closed port on 127.0.0.1."""
    port = _closed_port()
    status = make_status(
        export_id,
        url=f"http://127.0.0.1:{port}/{url_tail}",
        log_id=None,
        exportType=export_type,
        volumeId=volume_id,
        exportPath=export_path,
    )
    dest = tmp_path_factory.mktemp("fuzz")

    async def run() -> None:
        async with Downloader(
            dest,
            credentials=Credentials("fuzz-ak", "fuzz-sk"),
            bos_endpoint=f"http://127.0.0.1:{port}",
            max_attempts=1,
            retry_wait=wait_none(),
        ) as downloader:
            with contextlib.suppress(DownloadError):
                await downloader.download(status)

    asyncio.run(run())


async def test_closed_downloader_refuses_to_work_and_opens_no_session(tmp_path: Path) -> None:
    downloader = _downloader(tmp_path)
    async with downloader:
        pass
    assert downloader.closed
    with pytest.raises(DownloaderClosedError, match="aclose"):
        await downloader.download(make_status(7, url="http://127.0.0.1:9/export.csv", log_id=None))
    assert downloader._session is None
    with pytest.raises(ClientClosedError):
        async with downloader:
            pass
    await downloader.aclose()  # twice is harmless


async def test_closed_downloader_on_a_callers_session_stays_closed(tmp_path: Path) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        downloader = Downloader(tmp_path, session=session)
        await downloader.aclose()
        assert not session.closed  # the caller's session is the caller's
        with pytest.raises(DownloaderClosedError):
            await downloader.download(
                make_status(7, url="http://127.0.0.1:9/export.csv", log_id=None)
            )


# -- verify_record_on_disk: the CLI's --resume check of a done record ---------------------


def _record(folder: Path, body: bytes = b"content\n") -> dict[str, Any]:
    target = folder / "7" / "export.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    return {"path": str(target), "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_record_of_a_file_in_place_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _record(tmp_path)
    assert verify_record_on_disk(tmp_path, record)
    as_record = DownloadRecord(7, record["path"], record["bytes"], record["sha256"])
    assert verify_record_on_disk(tmp_path, as_record)
    monkeypatch.chdir(tmp_path)
    assert verify_record_on_disk(".", dict(record, path="7/export.csv"))


def test_forged_or_stale_records_do_not_verify(tmp_path: Path) -> None:
    record = _record(tmp_path / "dl")
    outside = _record(tmp_path / "elsewhere")
    folder = tmp_path / "dl"
    assert not verify_record_on_disk(folder, outside)  # outside the folder
    climbing = dict(record, path=str(folder / ".." / "elsewhere" / "7" / "export.csv"))
    assert not verify_record_on_disk(folder, climbing)
    assert not verify_record_on_disk(folder, dict(record, sha256="0" * 64))
    assert not verify_record_on_disk(folder, dict(record, bytes=record["bytes"] + 1))
    assert not verify_record_on_disk(folder, dict(record, bytes="8"))
    assert not verify_record_on_disk(folder, {"path": None})
    assert not verify_record_on_disk(folder, json.loads("[1]"))
    assert not verify_record_on_disk(folder, dict(record, path=str(folder)))
    Path(record["path"]).write_bytes(b"changed!")  # same size, other bytes
    assert not verify_record_on_disk(folder, record)
    Path(record["path"]).unlink()
    assert not verify_record_on_disk(folder, record)


def test_records_reached_through_a_link_do_not_verify(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    elsewhere = tmp_path / "elsewhere"
    real = _record(elsewhere)
    (folder / "8").mkdir(parents=True)
    (folder / "8" / "export.csv").symlink_to(real["path"])
    assert not verify_record_on_disk(folder, dict(real, path=str(folder / "8" / "export.csv")))
    (folder / "9").symlink_to(elsewhere / "7")
    assert not verify_record_on_disk(folder, dict(real, path=str(folder / "9" / "export.csv")))
    os.mkfifo(folder / "8" / "fifo")
    assert not verify_record_on_disk(folder, dict(real, path=str(folder / "8" / "fifo")))
