"""``Simulator``: the fake export-status API as an ``aiohttp.web`` application.

Per request, in order: signature check (HTTP 401 on failure), QPS limit (code 18),
one fault draw, then the body is parsed and the export looked up (code 500001 if
unknown), and the export's state at that moment is answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

from aiohttp import web

from .._checks import check_count, check_number
from ..auth import Credentials
from ..client import EXPORT_STATUS_PATH
from .config import FaultRates, SimulatorConfig
from .exports import DONE, EXPORT_TYPES, FAIL, ExportTable, ExportType, SimExport
from .files import SimFile
from .limits import FaultPicker, QpsWindow
from .stats import SimulatorStats
from .storage import FileServer, reset_connection
from .verify import AuthFailure, verify_authorization

__all__ = ["STATS_PATH", "Simulator"]

STATS_PATH = "/_sim/stats"
QPS_LIMIT_CODE = 18
QPS_LIMIT_MESSAGE = "Open api qps request limit reached"
INVALID_PARAM_CODE = 500001
INTERNAL_ERROR_CODE = 336100
_MAX_BODY_BYTES = 64 * 1024


def _json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_response(payload: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=_json_body(payload), status=status, content_type="application/json")


class Simulator:
    """The fake Qianfan export-status API, with exports, limits and faults under test control.

    ``clock`` (monotonic) drives export schedules and the QPS window; ``wall_clock`` plus
    ``config.clock_skew`` is the server's time for signatures and the ``Date`` header.
    """

    def __init__(
        self,
        credentials: Credentials,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError(f"credentials must be a Credentials, got {type(credentials).__name__}")
        self.credentials = credentials
        self._config = config or SimulatorConfig()
        self._clock = clock
        self._wall_clock = wall_clock
        self._table = ExportTable(clock)
        self._stats = SimulatorStats(self._table, clock)
        self._schedule_rng = random.Random(f"{self._config.seed}:exports")
        self._faults = FaultPicker(
            self._config.faults, random.Random(f"{self._config.seed}:faults")
        )
        self._limiter = self._make_limiter(self._config)
        self._storage = FileServer(
            self._table, self._stats, lambda: self._config, self.wall_time, credentials
        )
        log_id_start = random.Random(f"{self._config.seed}:log-ids").randrange(10**9, 4 * 10**9)
        self._log_ids = itertools.count(log_id_start)
        self._app: web.Application | None = None

    def __repr__(self) -> str:
        return (
            f"Simulator(credentials={self.credentials!r}, exports={len(self._table)}, "
            f"config={self._config!r})"
        )

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> SimulatorConfig:
        """The current configuration (frozen; change it with ``configure``)."""
        return self._config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change knobs mid-run, e.g. ``configure(qps=5, faults=FaultRates(reset=0.1))``.

        ``faults`` may also be a number: a combined rate split evenly across the kinds.
        A new ``seed`` restarts the fault draws; a new ``qps`` or ``qps_window`` starts an
        empty window.
        """
        faults = changes.get("faults")
        if faults is not None and not isinstance(faults, FaultRates):
            changes["faults"] = FaultRates.even(faults)
        old, new = self._config, dataclasses.replace(self._config, **changes)
        self._config = new
        if new.seed != old.seed:
            self._faults = FaultPicker(new.faults, random.Random(f"{new.seed}:faults"))
        elif new.faults != old.faults:
            self._faults.set_rates(new.faults)
        if (new.qps, new.qps_window) != (old.qps, old.qps_window):
            self._limiter = self._make_limiter(new)
        self._storage.reconfigure(old, new)
        return new

    @staticmethod
    def _make_limiter(config: SimulatorConfig) -> QpsWindow | None:
        return None if config.qps is None else QpsWindow.for_rate(config.qps, config.qps_window)

    def wall_time(self) -> float:
        """The simulator's epoch time: the wall clock shifted by ``clock_skew``."""
        return self._wall_clock() + self._config.clock_skew

    # -- exports -------------------------------------------------------------------

    def add_export(
        self,
        finish_after: float | None = 3.0,
        fail: bool = False,
        export_type: ExportType = "local",
        uploading_after: float | None = None,
        export_id: int | None = None,
    ) -> SimExport:
        """Add an export that turns Uploading after ``uploading_after`` seconds (default a
        third of ``finish_after``) and Done (or Fail) after ``finish_after`` seconds;
        ``finish_after=None`` holds it until ``complete``/``fail``. Ids count up from 1."""
        return self._table.add(
            finish_after=finish_after,
            fail=fail,
            export_type=export_type,
            uploading_after=uploading_after,
            export_id=export_id,
            now=self._clock(),
        )

    def add_exports(
        self, n: int, max_seconds: float = 8.0, fail_ratio: float = 0.1
    ) -> list[SimExport]:
        """Add ``n`` exports with seeded finish times spread uniformly over
        [0, ``max_seconds``] from now; ``round(n * fail_ratio)`` of them, chosen by the
        seed, end in Fail. Export types alternate at random between local and storage."""
        check_count("n", n, minimum=0)
        check_number("max_seconds", max_seconds, inclusive=True)
        check_number("fail_ratio", fail_ratio, unit="fraction", inclusive=True, maximum=1.0)
        rng = self._schedule_rng
        failing = set(rng.sample(range(n), round(n * fail_ratio)))
        now = self._clock()
        added = []
        for index in range(n):
            finish_after = rng.uniform(0.0, max_seconds)
            added.append(
                self._table.add(
                    finish_after=finish_after,
                    fail=index in failing,
                    export_type=EXPORT_TYPES[rng.random() < 0.5],
                    uploading_after=finish_after * rng.uniform(0.1, 0.6),
                    export_id=None,
                    now=now,
                )
            )
        return added

    def complete(self, export_id: int | str) -> SimExport:
        """Make an export Done now (no-op if it already is; ``ValueError`` if it failed)."""
        return self._table.settle(export_id, DONE, self._clock())

    def fail(self, export_id: int | str) -> SimExport:
        """Make an export Fail now (no-op if it already has; ``ValueError`` if it is Done)."""
        return self._table.settle(export_id, FAIL, self._clock())

    def hold(self, export_id: int | str) -> SimExport:
        """Keep a not yet terminal export from finishing until ``complete``/``fail``."""
        return self._table.hold(export_id, self._clock())

    def export(self, export_id: int | str) -> SimExport:
        """The export with either id form; ``KeyError`` if there is none."""
        return self._table.get(export_id)

    def state_of(self, export_id: int | str) -> str:
        """The export's state now, as the API would spell it."""
        return self._table.get(export_id).state_at(self._clock())

    def file_of(self, export_id: int | str) -> SimFile:
        """The file a Done export serves: its name, size, bytes and ``digest()``."""
        return self._storage.file_of(self._table.get(export_id))

    @property
    def exports(self) -> Mapping[int, SimExport]:
        """All exports by int id (read-only view)."""
        return MappingProxyType(self._table.by_id)

    # -- observability -------------------------------------------------------------

    @property
    def stats(self) -> SimulatorStats:
        """Live request and export counters."""
        return self._stats

    def reset_stats(self) -> None:
        """Start counting afresh (e.g. between the phases of a benchmark)."""
        self._stats.reset()

    def stats_dict(
        self, *, include_exports: bool = False, include_requests: bool = False
    ) -> dict[str, Any]:
        """The statistics as JSON-able data, as served at ``GET /_sim/stats``
        (``?exports=1``, ``?requests=1`` for the optional parts)."""
        return self._stats.as_dict(
            include_exports=include_exports, include_requests=include_requests
        )

    # -- HTTP ----------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        """The ``aiohttp.web`` application (built on first use, then the same object)."""
        if self._app is None:
            app = web.Application(client_max_size=_MAX_BODY_BYTES)
            app.router.add_post(EXPORT_STATUS_PATH, self._handle_status)
            app.router.add_get(STATS_PATH, self._handle_stats)
            self._storage.add_routes(app)
            app.on_response_prepare.append(self._stamp_date)
            self._app = app
        return self._app

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: a free port) and yield the base URL."""
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
            yield f"http://{shown_host}:{bound_port}"
        finally:
            await runner.cleanup()

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = email.utils.formatdate(self.wall_time(), usegmt=True)

    def _next_log_id(self) -> str:
        return str(next(self._log_ids))

    def _error_payload(self, code: int, message: str) -> dict[str, Any]:
        return {"error_code": code, "error_msg": message, "log_id": self._next_log_id()}

    def _error(self, code: int, message: str) -> web.Response:
        return _json_response(self._error_payload(code, message))

    def _auth_failure(self, failure: AuthFailure) -> web.Response:
        response = _json_response(
            self._error_payload(failure.error_code, failure.message), status=401
        )
        response.headers["X-Bce-Error-Code"] = failure.bce_error_code
        # The message may quote the client's header; keep the echo printable ASCII.
        response.headers["X-Bce-Error-Message"] = "".join(
            ch if " " <= ch <= "~" else "?" for ch in failure.message
        )
        return response

    def _throttled(self) -> web.Response:
        response = self._error(QPS_LIMIT_CODE, QPS_LIMIT_MESSAGE)
        if self._config.retry_after is not None:
            response.headers["Retry-After"] = f"{self._config.retry_after:g}"
        return response

    async def _handle_status(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.record_arrival()
        try:
            return await self._answer_status(request, stats)
        except ConnectionResetError:
            # The client went away before its body arrived (it cancelled the request):
            # there is nobody to answer, and nothing worth a traceback in the log.
            return web.Response(status=499)
        finally:
            stats.record_departure()

    async def _answer_status(
        self, request: web.Request, stats: SimulatorStats
    ) -> web.StreamResponse:
        failure = verify_authorization(
            self.credentials,
            method=request.method,
            raw_path=request.raw_path.partition("?")[0],
            query=request.query,
            headers=request.headers,
            now=self.wall_time(),
            max_future_seconds=self._config.max_future_seconds,
        )
        if failure is not None:
            stats.record("auth_failed")
            return self._auth_failure(failure)
        if self._limiter is not None and not self._limiter.try_acquire(self._clock()):
            stats.record("throttled")
            return self._throttled()
        fault = self._faults.draw()
        if fault == "reset":
            stats.record(fault)
            reset_connection(request)
            return web.Response(status=500)
        if fault == "http_500":
            stats.record(fault)
            return web.Response(status=500, text="500 Internal Server Error")
        if fault == "code_336100":
            stats.record(fault)
            return self._error(INTERNAL_ERROR_CODE, "internal error")
        if fault == "slow":
            await asyncio.sleep(self._config.slow_delay)
        export = await self._find_export(request)
        if export is None:
            outcome = "invalid"
            payload = self._error_payload(INVALID_PARAM_CODE, "param invalid")
        else:
            outcome = "ok"
            now = self._clock()
            download_url = ""
            if export.export_type == "local" and export.state_at(now) == DONE:
                origin = f"{request.scheme}://{request.host}"
                download_url = self._storage.download_url(origin, request.host, export)
            payload = {
                "log_id": self._next_log_id(),
                "result": export.result_at(now, download_url),
            }
        body = _json_body(payload)
        if fault == "truncated":
            stats.record(fault)
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        stats.record(fault or outcome)
        if export is not None:
            stats.record_answer(export)
        return web.Response(body=body, content_type="application/json")

    async def _find_export(self, request: web.Request) -> SimExport | None:
        try:
            payload = json.loads(await request.read())
        except (ValueError, RecursionError, web.HTTPException):
            return None
        if not isinstance(payload, dict) or "exportID" not in payload:
            return None
        return self._table.find(payload["exportID"])

    async def _handle_stats(self, request: web.Request) -> web.Response:
        def wanted(name: str) -> bool:
            return request.query.get(name, "") not in ("", "0", "false")

        return _json_response(
            self.stats_dict(include_exports=wanted("exports"), include_requests=wanted("requests"))
        )
