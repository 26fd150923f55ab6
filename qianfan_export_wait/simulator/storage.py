"""The simulator's storage: the files of Done exports, over HTTP, the way BOS serves them.

* ``local`` exports: ``GET /_files/<export id>/<file name>?authorization=...``, the
  ``downloadUrl`` of a Done status, presigned like a BOS link (``bce-auth-v1`` over the
  ``host`` header, by a platform key of the simulator's own, valid ``link_ttl`` seconds);
  an expired or altered link answers HTTP 403.
* ``storage`` exports: ``GET /<volumeId>/<exportPath>``, a path-style BOS ``GetObject``
  signed with the account's AK/SK (what Baidu's SDK sends to an IP endpoint), checked by
  the same verifier as the status API.

Both answer ``Range: bytes=a-[b]`` with HTTP 206, ``If-Match`` with HTTP 412 when the
ETag differs and ``If-None-Match`` with HTTP 304 when it is the same (as BOS does); a
full answer carries ``Content-MD5``; every answer carries the ETag (the hex MD5, quoted,
as BOS gives it for a simple upload). Faults come from
``SimulatorConfig.download_faults``, one draw per file request.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import re
import secrets
import socket
import struct
from collections.abc import Callable
from contextlib import suppress

from aiohttp import web

from ..auth import Credentials, sign, uri_encode
from .config import SimulatorConfig
from .exports import DONE, FILES_PREFIX, VOLUME_ID, ExportTable, SimExport
from .files import SimFile, file_size_for
from .limits import FaultPicker
from .stats import SimulatorStats
from .verify import AuthFailure, verify_authorization

__all__ = ["FileServer", "reset_connection"]

_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{0,19})")
_CONTENT_TYPES = {"csv": "text/csv", "zip": "application/zip"}
_PLATFORM_ACCESS_KEY = "qianfan-sim-platform"
_DIGEST_IN_THREAD_BYTES = 4 * 1024 * 1024


def _bos_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    body = json.dumps({"code": code, "message": message, "requestId": request_id})
    response = web.Response(status=status, text=body, content_type="application/json")
    response.headers["x-bce-request-id"] = request_id
    return response


class FileServer:
    """Serves Done exports' files for a ``Simulator``; it shares the export table, the
    statistics, the configuration and the clock."""

    def __init__(
        self,
        table: ExportTable,
        stats: SimulatorStats,
        config: Callable[[], SimulatorConfig],
        wall_time: Callable[[], float],
        credentials: Credentials,
    ) -> None:
        self._table = table
        self._stats = stats
        self._config = config
        self._wall_time = wall_time
        self._credentials = credentials
        # The platform's own key presigns local links; no test or user ever holds it.
        self._platform = Credentials(_PLATFORM_ACCESS_KEY, secrets.token_hex(16))
        self._files: dict[int, SimFile] = {}
        seed = config().seed
        self._faults = FaultPicker(
            config().download_faults, random.Random(f"{seed}:download-faults")
        )
        self._request_ids = itertools.count(random.Random(f"{seed}:bos-ids").randrange(10**9))

    def add_routes(self, app: web.Application) -> None:
        """Register the two file routes on ``app``."""
        app.router.add_get(FILES_PREFIX + "{export_id}/{name}", self._handle_link)
        app.router.add_get(f"/{VOLUME_ID}/{{key:.+}}", self._handle_bos)

    def reconfigure(self, old: SimulatorConfig, new: SimulatorConfig) -> None:
        """Follow a ``Simulator.configure`` call: new fault rates, seed or file sizes."""
        if new.seed != old.seed:
            self._faults = FaultPicker(
                new.download_faults, random.Random(f"{new.seed}:download-faults")
            )
        elif new.download_faults != old.download_faults:
            self._faults.set_rates(new.download_faults)
        if (new.seed, new.file_sizes) != (old.seed, old.file_sizes):
            self._files.clear()

    def file_of(self, export: SimExport) -> SimFile:
        """The file a Done ``export`` serves (made once, then kept)."""
        sim_file = self._files.get(export.export_id)
        if sim_file is None:
            config = self._config()
            low, high = config.file_sizes
            size = file_size_for(export.export_id, config.seed, low, high)
            sim_file = SimFile(export.export_id, export.file_name, export.file_kind, size, 0)
            self._files[export.export_id] = sim_file
        return sim_file

    def download_url(self, origin: str, host: str, export: SimExport) -> str:
        """A presigned link to ``export``'s file at ``origin`` (``http://host:port``)."""
        authorization = sign(
            self._platform,
            method="GET",
            path=export.file_path,
            headers={"host": host},
            timestamp=int(self._wall_time()),
            expiration_seconds=self._config().link_ttl,
            headers_to_sign=("host",),
        )
        encoded_path = uri_encode(export.file_path, keep_slash=True)
        return f"{origin}{encoded_path}?authorization={uri_encode(authorization)}"

    def _next_request_id(self) -> str:
        return f"sim-bos-{next(self._request_ids)}"

    def _refuse(self, failure: AuthFailure, export: SimExport | None) -> web.Response:
        expired = failure.bce_error_code == "RequestExpired"
        self._stats.record_file("expired" if expired else "auth_failed", _id_of(export))
        return _bos_error(403, failure.bce_error_code, failure.message, self._next_request_id())

    def _not_found(self, export: SimExport | None) -> web.Response:
        self._stats.record_file("not_found", _id_of(export))
        return _bos_error(
            404, "NoSuchKey", "The specified key does not exist.", self._next_request_id()
        )

    async def _handle_link(self, request: web.Request) -> web.StreamResponse:
        id_text = request.match_info["export_id"]
        export = self._table.find(int(id_text)) if id_text.isdigit() and len(id_text) < 20 else None
        query = dict(request.query)
        authorization = query.pop("authorization", "")
        failure = verify_authorization(
            self._platform,
            method=request.method,
            raw_path=request.raw_path.partition("?")[0],
            query=query,
            headers={"authorization": authorization, "host": request.host},
            now=self._wall_time(),
            max_future_seconds=self._config().max_future_seconds,
        )
        if failure is not None:
            return self._refuse(failure, export)
        if (
            export is None
            or export.export_type != "local"
            or export.state != DONE
            or request.match_info["name"] != export.file_name
        ):
            return self._not_found(export)
        fault = self._faults.draw()
        if fault == "forbidden":
            self._stats.record_file(fault, export.export_id)
            return _bos_error(403, "AccessDenied", "Access denied.", self._next_request_id())
        return await self._serve(request, export, fault)

    async def _handle_bos(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        export = self._table.find_by_file(key.rpartition("/")[2])
        failure = verify_authorization(
            self._credentials,
            method=request.method,
            raw_path=request.raw_path.partition("?")[0],
            query=request.query,
            headers=request.headers,
            now=self._wall_time(),
            max_future_seconds=self._config().max_future_seconds,
        )
        if failure is not None:
            return self._refuse(failure, export)
        if (
            export is None
            or export.export_type != "storage"
            or export.state != DONE
            or export.export_path != key
        ):
            return self._not_found(export)
        fault = self._faults.draw()
        # A 403 is what an expired *link* answers; a signed GetObject has no link to expire.
        return await self._serve(request, export, None if fault == "forbidden" else fault)

    async def _serve(
        self, request: web.Request, export: SimExport, fault: str | None
    ) -> web.StreamResponse:
        stats = self._stats
        sim_file = self.file_of(export)
        if sim_file.size > _DIGEST_IN_THREAD_BYTES:
            digest = await asyncio.to_thread(sim_file.digest)
        else:
            digest = sim_file.digest()
        etag = f'"{digest.md5_hex}"'
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match.strip() not in ("*", etag, digest.md5_hex):
            stats.record_file("precondition_failed", export.export_id)
            return _bos_error(
                412, "PreconditionFailed", "If-Match does not match.", self._next_request_id()
            )
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and if_none_match.strip() in ("*", etag):
            stats.record_file("not_modified", export.export_id)
            return web.Response(status=304, headers={"ETag": etag})
        start, end, ranged = 0, sim_file.size, False
        match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
        if match is not None:
            start = int(match.group(1))
            if match.group(2):
                end = min(int(match.group(2)) + 1, sim_file.size)
            if start >= sim_file.size or start >= end:
                stats.record_file("unsatisfiable", export.export_id)
                refusal = _bos_error(
                    416, "InvalidRange", "Range not satisfiable.", self._next_request_id()
                )
                refusal.headers["Content-Range"] = f"bytes */{sim_file.size}"
                return refusal
            ranged = True
            if if_match is not None:
                stats.resumed_with_if_match += 1
        stats.record_file(fault or ("partial" if ranged else "full"), export.export_id)
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": _CONTENT_TYPES[sim_file.kind],
            "x-bce-request-id": self._next_request_id(),
        }
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{sim_file.size}"
        else:
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(digest.md5_hex)).decode()
        response = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        stop = start + (end - start) // 2 if fault in ("reset", "short_body") else end
        pieces = max(1, -(-(stop - start) // (64 * 1024)))
        pause = self._config().slow_body_delay / pieces if fault == "slow" else 0.0
        sent = 0
        stats.file_started()
        try:
            for piece in sim_file.iter_range(start, stop):
                if fault == "wrong_md5" and sent == 0:
                    piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
                await response.write(piece)
                sent += len(piece)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            stats.file_ended(sent)
        if fault in ("reset", "short_body"):
            _cut(request, reset=fault == "reset")
            return response
        await response.write_eof()
        return response


def _id_of(export: SimExport | None) -> int | None:
    return None if export is None else export.export_id


def reset_connection(request: web.Request) -> None:
    """Abort the request's connection with a TCP RST, as a crashed gateway would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns the close into a TCP RST.
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _cut(request: web.Request, *, reset: bool) -> None:
    """End the connection mid-body: an RST for ``reset``, else a clean close (FIN)."""
    if reset:
        reset_connection(request)
    elif request.transport is not None:
        request.transport.close()
