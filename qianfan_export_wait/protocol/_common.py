"""What every call shares on the way out: the request value, its signed headers, the
operation shape and the arguments' checks. Reading answers is ``_answers``'s; its names
are still found here. Pure code: no I/O, no clock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ..auth import Credentials, canonical_time, sign, uri_encode
from ..errors import ConfigurationError
from ..models import ExportId, describe_value, validate_export_id
from ._answers import (
    EVAL_DONE,
    EVAL_FAILED,
    EVAL_PARTLY_DONE,
    EVAL_RUNNING,
    MAX_RESPONSE_BYTES,
    V2_AUTH_CODES,
    V2_AUTH_WORDS,
    V2_THROTTLE_CODES,
    V2_THROTTLE_WORDS,
    V2_TRANSIENT_CODES,
    Now,
    answer_result,
    as_datetime,
    check_now,
    check_status,
    create_result,
    decode,
    decoded_answer,
    eval_phase,
    header,
    optional_str,
    required_str,
    uncertain,
    usable_id,
    v1_error,
    v1_result,
    v2_error,
    v2_error_class,
    v2_result,
)

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_RESPONSE_BYTES",
    "SIGNED_HEADERS",
    "Operation",
    "Request",
    "signed_headers",
]
# Reading answers moved to ``_answers``; the calls (and the client) import these from here.
__all__ += [
    "EVAL_DONE",
    "EVAL_FAILED",
    "EVAL_PARTLY_DONE",
    "EVAL_RUNNING",
    "V2_AUTH_CODES",
    "V2_AUTH_WORDS",
    "V2_THROTTLE_CODES",
    "V2_THROTTLE_WORDS",
    "V2_TRANSIENT_CODES",
    "Now",
    "answer_result",
    "as_datetime",
    "check_now",
    "check_status",
    "create_result",
    "decode",
    "decoded_answer",
    "eval_phase",
    "header",
    "optional_str",
    "required_str",
    "uncertain",
    "usable_id",
    "v1_error",
    "v1_result",
    "v2_error",
    "v2_error_class",
    "v2_result",
]

JSON_CONTENT_TYPE = "application/json"
SIGNED_HEADERS = ("content-type", "host", "x-bce-date")
V2_EVAL_PATH = "/v2/eval"

ArgsT = TypeVar("ArgsT", contravariant=True)
RecordT = TypeVar("RecordT", covariant=True)


@dataclass(frozen=True, slots=True)
class Request:
    """One API request to send: method, path, query pairs (signed with the rest) and the
    JSON body bytes. ``operation`` names the call, e.g. ``"v2.export_status"``."""

    operation: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str = JSON_CONTENT_TYPE

    @property
    def query_params(self) -> dict[str, str]:
        """The query as a mapping, as ``auth.sign`` and aiohttp's ``params`` take it."""
        return dict(self.query)

    @property
    def query_string(self) -> str:
        """The query as sent: ``k=v`` pairs, percent-encoded the way they are signed."""
        return "&".join(f"{uri_encode(key)}={uri_encode(value)}" for key, value in self.query)

    @property
    def target(self) -> str:
        """Path and query, as in the request line."""
        return f"{self.path}?{self.query_string}" if self.query else self.path


def signed_headers(
    request: Request,
    credentials: Credentials,
    host: str,
    timestamp: str | int | float | datetime,
    *,
    expiration_seconds: int = 1800,
) -> dict[str, str]:
    """The headers of ``request`` sent to ``host``, signed at ``timestamp`` (passed in:
    no clock here) with ``host``, ``content-type`` and ``x-bce-date`` and the query."""
    signed_at = canonical_time(timestamp)
    headers = {"Host": host, "Content-Type": request.content_type, "x-bce-date": signed_at}
    headers["Authorization"] = sign(
        credentials,
        method=request.method,
        path=request.path,
        query=request.query_params,
        headers=headers,
        timestamp=signed_at,
        expiration_seconds=expiration_seconds,
        headers_to_sign=SIGNED_HEADERS,
    )
    return headers


class Operation(Protocol[ArgsT, RecordT]):
    """One API call of one generation: ``build`` makes its request from arguments, ``read``
    turns an answer into a record or raises the classified ``QianfanError``."""

    @property
    def name(self) -> str:
        """The call, e.g. ``"export_status"``."""
        ...

    @property
    def api(self) -> str:
        """The generation, ``"v1"`` or ``"v2"``."""
        ...

    def build(self, args: ArgsT) -> Request:
        """The request for ``args``; ``ConfigurationError`` names a bad argument."""
        ...

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: Now,
        *,
        args: ArgsT | None = None,
    ) -> RecordT:
        """The record in an answer (checked against ``args`` when given), or the error."""
        ...


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, ints kept ints."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def id_argument(value: object, what: str) -> ExportId:
    """``value`` as an id (int or printable string, as ``validate_export_id``), or
    ``ConfigurationError`` naming ``what`` and the value."""
    try:
        return validate_export_id(value)
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {exc}".replace("export id ", "")) from None


def string_id_argument(value: object, what: str, example: str) -> str:
    """``value`` as a V2 string id, or ``ConfigurationError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ConfigurationError(
            f"{what} {describe_value(value)} is a {type(value).__name__}; V2 takes the "
            f"string id (e.g. {example!r}), not a V1 numeric id"
        )
    checked = id_argument(value, what)
    assert isinstance(checked, str)
    return checked
