"""``Simulator``: the fake Qianfan console API as an ``aiohttp.web`` application.

It serves both generations of the three calls of an export job: an evaluation's status,
creating its export, the export's status. V1 answers ``{"log_id", "result"}`` and refuses
with ``error_code``/``error_msg`` in an HTTP 200 body (HTTP 401 for authentication); V2
(``POST /v2/eval?Action=...``) answers ``{"requestId", "result"}`` and refuses with
``{"requestId", "code", "message"}`` under an HTTP status of 400 or more:

============  ==========================================================================
HTTP 400      ``InvalidParameter`` (a bad body or a create for an unfinished evaluation),
              ``InvalidAction`` (an ``Action`` it does not know)
HTTP 401/403  the ``X-Bce-Error-Code`` of the failed check (``SignatureDoesNotMatch``,
              ``RequestExpired``...; 403 for ``InvalidAccessKeyId``)
HTTP 404      ``ResourceNotFound`` (no such evaluation or export task)
HTTP 429      ``TooManyRequests`` (beyond the QPS limit)
HTTP 500      ``InternalError`` (the ``code_336100`` fault's V2 form)
============  ==========================================================================

Baidu's pages give the V2 error shape but not these code strings; they are the
simulator's choice, and a client should classify by HTTP status first.

Per request, in order: the generation is served (else HTTP 404), the signature (query
string included), the QPS limit, V2's ``Action``, one fault draw, then the call. A fault
on a create strikes after the export was made when the answer is lost on the way back
(``reset``, ``truncated``, ``slow``), and before it when the server answers an error
(``http_500``, ``code_336100``), so a client cannot tell from the answer alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from ..auth import Credentials
from ..client import EXPORT_STATUS_PATH
from .calls import (
    V1_CREATE_EXPORT_PATH,
    V1_EVALUATION_PATH,
    V2_ACTIONS,
    V2_EVAL_PATH,
    BadRequest,
    CreateRequest,
    Generation,
    Operation,
    read_id,
    read_v1_create,
    read_v2_create,
    shown,
)
from .config import SimulatorConfig
from .control import _Controls
from .evaluations import EvaluationTable, SimEvaluation
from .exports import DONE, ExportTable, SimExport
from .limits import FaultPicker
from .stats import SimulatorStats
from .storage import FileServer, reset_connection
from .verify import AuthFailure, verify_authorization

__all__ = ["STATS_PATH", "Simulator"]

STATS_PATH = "/_sim/stats"
QPS_LIMIT_CODE = 18
QPS_LIMIT_MESSAGE = "Open api qps request limit reached"
INVALID_PARAM_CODE = 500001
INTERNAL_ERROR_CODE = 336100
V2_THROTTLED_CODE = "TooManyRequests"
V2_INVALID_CODE = "InvalidParameter"
V2_INVALID_ACTION_CODE = "InvalidAction"
V2_NOT_FOUND_CODE = "ResourceNotFound"
V2_INTERNAL_ERROR_CODE = "InternalError"
_MAX_BODY_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer:
    """A call's answer before it is sent: HTTP status, JSON payload, the outcome counted,
    and the export or evaluation whose poll it was."""

    status: int
    payload: dict[str, Any]
    outcome: str
    export: SimExport | None = None
    evaluation: SimEvaluation | None = None


def _json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_response(payload: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=_json_body(payload), status=status, content_type="application/json")


class Simulator(_Controls):
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
        self._evaluations = EvaluationTable(clock)
        self._stats = SimulatorStats(self._table, clock, self._evaluations)
        self._schedule_rng = random.Random(f"{self._config.seed}:exports")
        self._evaluation_rng = random.Random(f"{self._config.seed}:evaluations")
        self._faults = FaultPicker(
            self._config.faults, random.Random(f"{self._config.seed}:faults")
        )
        self._create_faults = self._make_create_faults(self._config)
        self._limiter = self._make_limiter(self._config)
        self._storage = FileServer(
            self._table, self._stats, lambda: self._config, self.wall_time, credentials
        )
        log_id_start = random.Random(f"{self._config.seed}:log-ids").randrange(10**9, 4 * 10**9)
        self._log_ids = itertools.count(log_id_start)
        self._request_ids = random.Random(f"{self._config.seed}:request-ids")
        self._app: web.Application | None = None

    def __repr__(self) -> str:
        return (
            f"Simulator(credentials={self.credentials!r}, exports={len(self._table)}, "
            f"evaluations={len(self._evaluations)}, config={self._config!r})"
        )

    # -- HTTP ----------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        """The ``aiohttp.web`` application (built on first use, then the same object)."""
        if self._app is None:
            app = web.Application(client_max_size=_MAX_BODY_BYTES)
            app.router.add_post(EXPORT_STATUS_PATH, self._handle_status)
            app.router.add_post(V1_EVALUATION_PATH, self._handle_v1_evaluation)
            app.router.add_post(V1_CREATE_EXPORT_PATH, self._handle_v1_create)
            app.router.add_post(V2_EVAL_PATH, self._handle_v2)
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

    def _next_request_id(self) -> str:
        return str(uuid.UUID(int=self._request_ids.getrandbits(128), version=4))

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

    def _v2_error(self, status: int, code: str, message: str) -> web.Response:
        request_id = self._next_request_id()
        response = _json_response(
            {"requestId": request_id, "code": code, "message": message}, status=status
        )
        response.headers["X-Bce-Request-Id"] = request_id
        return response

    def _v2_auth_failure(self, failure: AuthFailure) -> web.Response:
        status = 403 if failure.bce_error_code == "InvalidAccessKeyId" else 401
        response = self._v2_error(status, failure.bce_error_code, failure.message)
        response.headers["X-Bce-Error-Code"] = failure.bce_error_code
        return response

    def _v2_throttled(self) -> web.Response:
        response = self._v2_error(429, V2_THROTTLED_CODE, QPS_LIMIT_MESSAGE)
        if self._config.retry_after is not None:
            response.headers["Retry-After"] = f"{self._config.retry_after:g}"
        return response

    def _refusal(self, generation: Generation, refusal: BadRequest, v1_message: str) -> _Answer:
        if generation == "v1":
            return _Answer(200, self._error_payload(INVALID_PARAM_CODE, v1_message), "invalid")
        status, code = (404, V2_NOT_FOUND_CODE) if refusal.not_found else (400, V2_INVALID_CODE)
        payload = {"requestId": self._next_request_id(), "code": code, "message": refusal.message}
        return _Answer(status, payload, "invalid")

    def _success(self, generation: Generation, result: dict[str, Any]) -> dict[str, Any]:
        if generation == "v1":
            return {"log_id": self._next_log_id(), "result": result}
        return {"requestId": self._next_request_id(), "result": result}

    async def _handle_status(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "v1", "export_status")

    async def _handle_v1_evaluation(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "v1", "evaluation_status")

    async def _handle_v1_create(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "v1", "create_export")

    async def _handle_v2(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "v2", None)

    async def _handle(
        self, request: web.Request, generation: Generation, operation: Operation | None
    ) -> web.StreamResponse:
        stats = self._stats
        stats.record_arrival()
        try:
            return await self._answer(request, stats, generation, operation)
        except ConnectionResetError:
            # The client went away before its body arrived (it cancelled the request):
            # there is nobody to answer, and nothing worth a traceback in the log.
            return web.Response(status=499)
        finally:
            stats.record_departure()

    async def _answer(
        self,
        request: web.Request,
        stats: SimulatorStats,
        generation: Generation,
        operation: Operation | None,
    ) -> web.StreamResponse:
        """Per request, in order: the generation is served, the signature (over the path,
        the query and the signed headers), the QPS limit, V2's ``Action``, one fault draw,
        then the call itself."""
        if not self._config.serves(generation):
            stats.record("not_served")
            return web.Response(status=404, text="404: Not Found")
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
            if generation == "v2":
                return self._v2_auth_failure(failure)
            return self._auth_failure(failure)
        if self._limiter is not None and not self._limiter.try_acquire(self._clock()):
            stats.record("throttled")
            return self._v2_throttled() if generation == "v2" else self._throttled()
        if operation is None:
            action = request.query.get("Action", "")
            known = V2_ACTIONS.get(action)
            if known is None:
                stats.record("invalid")
                return self._v2_error(
                    400,
                    V2_INVALID_ACTION_CODE,
                    f"Action {shown(action)} is not one of {', '.join(sorted(V2_ACTIONS))}",
                )
            operation = known
        stats.record_call(f"{generation}.{operation}")
        creating = operation == "create_export"
        fault = (self._create_faults or self._faults).draw() if creating else self._faults.draw()
        if fault == "reset" and not creating:
            stats.record(fault)
            reset_connection(request)
            return web.Response(status=500)
        if fault == "http_500":
            stats.record(fault)
            return web.Response(status=500, text="500 Internal Server Error")
        if fault == "code_336100":
            stats.record(fault)
            if generation == "v2":
                return self._v2_error(500, V2_INTERNAL_ERROR_CODE, "internal error")
            return self._error(INTERNAL_ERROR_CODE, "internal error")
        if fault == "slow" and not creating:
            await asyncio.sleep(self._config.slow_delay)
        answer = await self._call(request, generation, operation)
        if creating and fault == "reset":
            # The export exists now, and its creator never hears of it.
            stats.record(fault)
            reset_connection(request)
            return web.Response(status=500)
        if creating and fault == "slow":
            await asyncio.sleep(self._config.slow_delay)
        body = _json_body(answer.payload)
        if fault == "truncated":
            stats.record(fault)
            return web.Response(
                body=body[: len(body) // 2], status=answer.status, content_type="application/json"
            )
        stats.record(fault or answer.outcome)
        if answer.export is not None:
            stats.record_answer(answer.export)
        if answer.evaluation is not None:
            stats.record_evaluation_answer(answer.evaluation)
        response = web.Response(body=body, status=answer.status, content_type="application/json")
        if generation == "v2" and "requestId" in answer.payload:
            response.headers["X-Bce-Request-Id"] = answer.payload["requestId"]
        return response

    async def _call(
        self, request: web.Request, generation: Generation, operation: Operation
    ) -> _Answer:
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError, web.HTTPException):
            body = None
        if not isinstance(body, dict):
            return self._refusal(
                generation, BadRequest("the body is not a JSON object"), "param invalid"
            )
        try:
            if operation == "export_status":
                return self._export_status(request, generation, body)
            if operation == "evaluation_status":
                return self._evaluation_status(generation, body)
            return self._create_export(generation, body)
        except BadRequest as refusal:
            v1_message = "param invalid"
            if operation != "export_status":  # today's message stays exactly as it was
                v1_message = f"param invalid: {refusal.message}"
            return self._refusal(generation, refusal, v1_message)

    def _export_status(
        self, request: web.Request, generation: Generation, body: dict[str, Any]
    ) -> _Answer:
        field = "exportID" if generation == "v1" else "taskId"
        key = read_id(body, field, generation, "export_status")
        export = self._table.find(key)
        if export is None:
            raise BadRequest(f"no export task {shown(key)}", not_found=True)
        now = self._clock()
        download_url = ""
        if export.export_type == "local" and export.state_at(now) == DONE:
            origin = f"{request.scheme}://{request.host}"
            download_url = self._storage.download_url(origin, request.host, export)
        if generation == "v1":
            result = export.result_at(now, download_url)
        else:
            result = export.v2_result_at(now, download_url)
        return _Answer(200, self._success(generation, result), "ok", export=export)

    def _evaluation_status(self, generation: Generation, body: dict[str, Any]) -> _Answer:
        field = "id" if generation == "v1" else "taskId"
        key = read_id(body, field, generation, "evaluation_status")
        evaluation = self._evaluations.find(key)
        if evaluation is None:
            raise BadRequest(f"no evaluation {shown(key)}", not_found=True)
        now = self._clock()
        if generation == "v1":
            result = evaluation.v1_result_at(now)
        else:
            result = evaluation.v2_result_at(now)
        return _Answer(200, self._success(generation, result), "ok", evaluation=evaluation)

    def _create_export(self, generation: Generation, body: dict[str, Any]) -> _Answer:
        wanted = read_v1_create(body) if generation == "v1" else read_v2_create(body)
        evaluation = self._evaluations.find(wanted.evaluation_key)
        if evaluation is None:
            raise BadRequest(f"no evaluation {shown(wanted.evaluation_key)}", not_found=True)
        now = self._clock()
        if not evaluation.exportable_at(now):
            raise BadRequest(
                f"evaluation {shown(wanted.evaluation_key)} is "
                f"{evaluation.state_at(now, generation)}; only a finished evaluation "
                f"({'Done or PartlyDone' if generation == 'v1' else 'Successed'}) "
                "can be exported"
            )
        export = self._make_export(evaluation, wanted, now)
        if generation == "v1":
            result: dict[str, Any] = {
                "exportID": export.export_id,
                "exportIDStr": export.export_id_str,
            }
        else:
            result = {"taskId": export.export_id_str}
        return _Answer(200, self._success(generation, result), "ok")

    def _make_export(
        self, evaluation: SimEvaluation, wanted: CreateRequest, now: float
    ) -> SimExport:
        # Seeded by evaluation and by how many creates it had, not by arrival order, so a
        # run's timelines do not depend on how its requests interleave.
        rng = random.Random(
            f"{self._config.seed}:create:{evaluation.evaluation_id}:{len(evaluation.export_ids)}"
        )
        finish_after = rng.uniform(0.0, self._config.created_export_seconds)
        fail = rng.random() < self._config.created_export_fail_ratio
        export = self._table.add(
            finish_after=finish_after,
            fail=fail,
            export_type=wanted.export_type,
            uploading_after=finish_after * rng.uniform(0.1, 0.6),
            export_id=None,
            now=now,
            evaluation_id=evaluation.evaluation_id,
            export_content=wanted.export_content,
        )
        evaluation.export_ids.append(export.export_id)
        return export

    async def _handle_stats(self, request: web.Request) -> web.Response:
        def wanted(name: str) -> bool:
            return request.query.get(name, "") not in ("", "0", "false")

        return _json_response(
            self.stats_dict(include_exports=wanted("exports"), include_requests=wanted("requests"))
        )
