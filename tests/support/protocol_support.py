"""Shared helpers of the protocol tests: a fixed ``now`` and JSON answer bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def body(payload: Any) -> bytes:
    """``payload`` as the JSON bytes of an answer."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def v1_answer(result: Any, log_id: str = "2340692759") -> bytes:
    """A V1 success body around ``result``."""
    return body({"log_id": log_id, "result": result})


def v2_answer(result: Any, request_id: str = "req-1") -> bytes:
    """A V2 success body around ``result``."""
    return body({"requestId": request_id, "result": result})


def v2_error(code: str, message: str = "something", request_id: str = "req-err") -> bytes:
    """A V2 error body."""
    return body({"requestId": request_id, "code": code, "message": message})
