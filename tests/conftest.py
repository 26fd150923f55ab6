"""Fixtures shared by the foundation tests. Kept small: anything specific lives in its test file."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator

import pytest
from redis_support import RedisServer, require_redis_server

from qianfan_export_wait.auth import Credentials

TEST_ACCESS_KEY = "AKIDTESTACCESSKEY0000000000000000"
TEST_SECRET_KEY = "SKTESTSECRETdo-not-leak-7f3a9c1e"


@pytest.fixture
def credentials() -> Credentials:
    """A fixed AK/SK pair; its secret key is distinctive so leak checks can grep for it."""
    return Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port of 127.0.0.1, persistence off (tests/redis_support.py)."""
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
