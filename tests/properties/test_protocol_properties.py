"""Reading any answer, however malformed, either yields a record or raises a
``QianfanError``: never a ``KeyError``, ``TypeError`` or the like."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_support import NOW

from qianfan_export_wait import protocol
from qianfan_export_wait.errors import CreateUncertainError, QianfanError, TransientError

OPERATIONS = [
    protocol.export_status("v1"),
    protocol.export_status("v2"),
    protocol.eval_status("v1"),
    protocol.eval_status("v2"),
    protocol.create_export("v1"),
    protocol.create_export("v2"),
]
HEADER_NAMES = st.sampled_from(
    ["Retry-After", "retry-after", "Date", "X-Bce-Error-Code", "X-Bce-Request-Id", "X-Other"]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["5", "-3", "nan", "inf", "1e400", "Fri, 02 Jan 2026 03:04:35 GMT", "Mon, 99 Zzz 99999"]
    ),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["Succeeded", "Done", "Fail", "PartlyDone", "amemt-1", "ame-1", "18"]),
)
KEYS = st.sampled_from(
    [
        "result", "state", "taskId", "evalId", "exportID", "exportIDStr", "id", "code",
        "message", "requestId", "log_id", "error_code", "error_msg", "storageType",
        "storagePath", "bucket", "downloadUrl", "evaluationId",
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=12,
)


def _read_all(status: int, headers: dict[str, str], payload: bytes) -> None:
    for operation in OPERATIONS:
        with contextlib.suppress(QianfanError):
            operation.read(status, headers, payload, NOW)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=599),
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    payload=st.binary(max_size=200),
)
def test_arbitrary_bytes_never_raise_anything_but_qianfan_errors(
    status: int, headers: dict[str, str], payload: bytes
) -> None:
    _read_all(status, headers, payload)


@settings(max_examples=400, deadline=None)
@given(
    status=st.sampled_from([200, 200, 200, 302, 400, 401, 403, 404, 429, 500, 503]),
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    document=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
)
def test_arbitrary_json_documents_never_raise_anything_but_qianfan_errors(
    status: int, headers: dict[str, str], document: dict[str, Any]
) -> None:
    _read_all(status, headers, json.dumps(document).encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=599),
    document=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
)
def test_a_create_never_surfaces_a_transient_error(status: int, document: dict[str, Any]) -> None:
    # A transient error invites a blind retry; for a create that could make a second export.
    payload = json.dumps(document).encode("utf-8")
    for operation in OPERATIONS[4:]:
        try:
            operation.read(status, {}, payload, NOW)
        except CreateUncertainError:
            pass
        except TransientError as error:
            raise AssertionError(f"{operation.api} create raised {error!r}") from None
        except QianfanError:
            pass
