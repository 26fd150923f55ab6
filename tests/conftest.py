"""Fixtures shared by the foundation tests. Kept small: anything specific lives in its test file."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis_support import RedisServer, require_redis_server
from scripted_server import MakeClient, ScriptedServer
from tenacity import wait_none

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import EXPORT_STATUS_PATH, ExportStatusClient

TEST_ACCESS_KEY = "AKIDTESTACCESSKEY0000000000000000"
TEST_SECRET_KEY = "SKTESTSECRETdo-not-leak-7f3a9c1e"


@pytest.fixture
def credentials() -> Credentials:
    """A fixed AK/SK pair; its secret key is distinctive so leak checks can grep for it."""
    return Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port of 127.0.0.1, persistence off
    (tests/support/redis_support.py)."""
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# The scripted server (tests/support/scripted_server.py), for the client's tests and its secrets'.
@pytest_asyncio.fixture
async def server(credentials: Credentials) -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer(credentials)
    app = web.Application()
    app.router.add_post(EXPORT_STATUS_PATH, scripted.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    scripted.port = test_server.port or 0
    try:
        yield scripted
    finally:
        scripted.release.set()
        await test_server.close()


@pytest_asyncio.fixture
async def make_client(
    server: ScriptedServer, credentials: Credentials
) -> AsyncIterator[MakeClient]:
    """Clients bound to the scripted server, without backoff waits; closed after the test."""
    made: list[ExportStatusClient] = []

    def factory(**options: Any) -> ExportStatusClient:
        settings: dict[str, Any] = {
            "base_url": server.base_url,
            "retry_wait": wait_none(),
            "request_timeout": 5.0,
            "max_attempts": 1,
        }
        settings.update(options)
        made.append(ExportStatusClient(credentials, **settings))
        return made[-1]

    yield factory
    for client in made:
        await client.aclose()


HANG_SECONDS = 300.0
"""No test takes a minute and a half; one that takes five has hung."""


@pytest.fixture(autouse=True)
def _no_test_hangs() -> Iterator[None]:
    """Turn a hang into a failure: print every thread's stack and end the run, so CI
    stops at once with the place it hung instead of at its time limit."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
