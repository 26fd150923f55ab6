"""JSON decoding for answers: ``orjson`` when the ``fast`` extra installed it, else the
standard library, with the same results either way."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["FAST", "loads"]


def _orjson() -> Any:
    try:
        return importlib.import_module("orjson")
    except ImportError:  # the default: the standard library alone
        return None


_ORJSON = _orjson()
FAST = _ORJSON is not None
"""Whether answers are decoded by orjson."""


def _orjson_loads(payload: bytes | str) -> Any:
    # What orjson refuses (NaN, numbers beyond 64 bits, ...) the standard library
    # decodes, so both installs read every body alike.
    try:
        return _ORJSON.loads(payload)
    except _ORJSON.JSONDecodeError:
        return json.loads(payload)


loads: Callable[[bytes | str], Any] = _orjson_loads if FAST else json.loads
"""Decode one JSON document."""
