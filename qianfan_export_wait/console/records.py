"""The JSON object printed for each export: it lives in ``qianfan_export_wait.jsonl``, below
the command line, since the durable worker writes the same records."""

from __future__ import annotations

from ..jsonl import RECORD_KEYS, json_line, outcome_record, record_for

__all__ = ["RECORD_KEYS", "json_line", "outcome_record", "record_for"]
