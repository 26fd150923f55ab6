"""The one scripted stand-in for Qianfan over HTTP (aiohttp on a loopback address): it
records every request exactly as it arrived and, given credentials, checks its
``Authorization`` the way Qianfan would: recomputed from the method, path, query and the
signed headers as received (``Host`` with its port), inside a time window of the server's
own clock. The ``server`` and ``make_client`` fixtures (conftest.py) serve it for the
client's tests; ``recording_server`` serves it without credentials (nothing checked, every
path answered) for the command line's and the hardening tests."""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from statuses import v1_body

from qianfan_export_wait.auth import Credentials, parse_authorization, sign
from qianfan_export_wait.client import EXPORT_STATUS_PATH, ExportStatusClient

__all__ = [
    "DEFAULT_URL",
    "MIB",
    "MakeClient",
    "Received",
    "Responder",
    "ScriptedServer",
    "answer",
    "bce_error",
    "cut_off_body",
    "recording_server",
    "reset_connection",
]

SIGNATURE_WINDOW_SECONDS = 300
REQUIRED_SIGNED_HEADERS = {"host", "content-type", "x-bce-date"}
MIB = 1024 * 1024
DEFAULT_URL = "https://qianfan.baidubce.com" + EXPORT_STATUS_PATH

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class ScriptedServer:
    """A stand-in for Qianfan: records requests, verifies their signatures (when it has
    ``credentials``), answers from ``script`` in order, then every request with ``answer``,
    else with a documented success for the asked id (or RequestExpired when signed out of
    the time window)."""

    credentials: Credentials | None
    clock_offset: float = 0.0
    requests: list[Received] = field(default_factory=list)
    script: list[Responder] = field(default_factory=list)
    answer: Responder | None = None
    signature_problems: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    host: str = "127.0.0.1"
    scheme: str = "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def now(self) -> float:
        return time.time() + self.clock_offset

    def then(self, *responders: Responder) -> None:
        """Answer the next requests with these, in order; afterwards, verify and succeed."""
        self.script.extend(responders)

    def signature_problem(self, received: Received) -> str | None:
        """Why the request's Authorization is not valid for the bytes received, if it is not."""
        assert self.credentials is not None
        try:
            parts = parse_authorization(received.headers.get("Authorization", ""))
        except ValueError as exc:
            return f"unparsable Authorization: {exc}"
        if parts.access_key != self.credentials.access_key:
            return "wrong access key"
        if not set(parts.signed_headers) >= REQUIRED_SIGNED_HEADERS:
            return f"signed headers {parts.signed_headers} miss one of {REQUIRED_SIGNED_HEADERS}"
        if received.headers.get("x-bce-date") != parts.timestamp:
            return "x-bce-date differs from the Authorization timestamp"
        signed = {name: received.headers.get(name, "") for name in parts.signed_headers}
        expected = sign(
            self.credentials,
            method=received.method,
            path=received.path,
            query=received.query,
            headers=signed,
            timestamp=parts.timestamp,
            expiration_seconds=parts.expiration_seconds,
            headers_to_sign=parts.signed_headers,
        )
        if expected != received.headers["Authorization"]:
            return "SignatureDoesNotMatch"
        return None

    def is_expired(self, received: Received) -> bool:
        issued_at = parse_authorization(received.headers["Authorization"]).issued_at.timestamp()
        return abs(issued_at - self.now()) > SIGNATURE_WINDOW_SECONDS

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=await request.read(),
        )
        self.requests.append(received)
        if self.credentials is not None:
            problem = self.signature_problem(received)
            if problem is not None:
                self.signature_problems.append(problem)
                return bce_error(400, "SignatureDoesNotMatch")
        if self.script:
            return await self.script.pop(0)(request)
        if self.answer is not None:
            return await self.answer(request)
        if self.credentials is not None and self.is_expired(received):
            return bce_error(400, "RequestExpired", date=self.now())
        export_id = json.loads(received.body)["exportID"]
        return web.json_response(v1_body(export_id, documented=True))

    async def hang(self) -> None:
        """Wait until the test ends (or the client goes away and the handler is cancelled)."""
        await asyncio.wait_for(self.release.wait(), timeout=10)


@asynccontextmanager
async def recording_server(
    answer: Responder | None = None,
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[ScriptedServer]:
    """A ``ScriptedServer`` without credentials (it checks no signature) answering every
    path with ``answer``, on ``host`` (a loopback address; https with ``ssl_context``) for
    the block."""
    recorder = ScriptedServer(None, answer=answer, host=host)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    recorder.port = runner.addresses[0][1]
    recorder.scheme = "http" if ssl_context is None else "https"
    try:
        yield recorder
    finally:
        recorder.release.set()
        await runner.cleanup()


def bce_error(status: int, code: str, *, date: float | None = None) -> web.Response:
    headers = {"X-Bce-Error-Code": code, "X-Bce-Request-Id": "req-1"}
    if date is not None:
        headers["Date"] = email.utils.formatdate(date, usegmt=True)
    return web.json_response(
        {"requestId": "req-1", "code": code, "message": code}, status=status, headers=headers
    )


def answer(
    body: Any = None, *, status: int = 200, headers: dict[str, str] | None = None
) -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, headers=headers)
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    return respond


MakeClient = Callable[..., ExportStatusClient]
"""The ``make_client`` fixture: keyword options -> a client bound to the scripted server."""


async def reset_connection(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError("closed by the test server")


async def cut_off_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 100
    await response.prepare(request)
    await response.write(b'{"log_id": "1", "res')
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError("closed by the test server")
