"""Server-side check of a ``bce-auth-v1`` Authorization header. Pure: the caller passes
the request's parts and the server's clock reading."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ..auth import (
    Credentials,
    canonical_headers,
    canonical_query,
    parse_authorization,
    signature_for,
    uri_encode,
)

__all__ = ["AuthFailure", "canonical_request_for", "verify_authorization"]

# Qianfan's "IAM Certification failed" code; the X-Bce-Error-Code header says which check.
IAM_CERTIFICATION_FAILED = 14


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused: the ``X-Bce-Error-Code`` value, the Qianfan
    ``error_code`` and a message (which never contains the secret key)."""

    bce_error_code: str
    message: str
    error_code: int = IAM_CERTIFICATION_FAILED


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def canonical_request_for(
    method: str,
    raw_path: str,
    query: Mapping[str, object],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    *,
    include_bce_headers: bool = False,
) -> str:
    """The canonical request a client must have signed, built from the request as received.

    ``raw_path`` is the percent-encoded path without the query. An empty
    ``signed_headers`` means Baidu's default set (host, content-length, content-type,
    content-md5 and every ``x-bce-*`` header); otherwise the listed headers, and with
    ``include_bce_headers`` every ``x-bce-*`` header as well (Baidu's own signer adds them
    whether listed or not).
    """
    if signed_headers:
        header_block = canonical_headers(
            headers, signed_headers, include_bce_headers=include_bce_headers
        )
    else:
        header_block = canonical_headers(headers, None, include_bce_headers=True)
    return "\n".join(
        (
            method.upper(),
            uri_encode(unquote(raw_path), keep_slash=True),
            canonical_query(query),
            header_block,
        )
    )


def verify_authorization(
    credentials: Credentials,
    *,
    method: str,
    raw_path: str,
    query: Mapping[str, object],
    headers: Mapping[str, str],
    now: float,
    max_future_seconds: float = 300.0,
) -> AuthFailure | None:
    """``None`` if the request carries a valid signature by ``credentials`` at epoch ``now``.

    Checks, in order: the header is present and well formed, the access key is the
    configured one, ``now`` lies within [timestamp - ``max_future_seconds``,
    timestamp + expiration], and the signature matches, over exactly the listed headers
    or over those plus every ``x-bce-*`` header.
    """
    value = _header(headers, "authorization")
    if value is None or not value.strip():
        return AuthFailure("InvalidHTTPAuthHeader", "Authorization header is missing")
    try:
        parts = parse_authorization(value)
    except ValueError as exc:
        return AuthFailure("InvalidHTTPAuthHeader", f"Authorization header is malformed: {exc}")
    if not hmac.compare_digest(
        parts.access_key.encode("utf-8"), credentials.access_key.encode("utf-8")
    ):
        return AuthFailure(
            "InvalidAccessKeyId",
            "NotFound, cause: Could not find credential.",
        )
    issued = parts.issued_at.timestamp()
    if now < issued - max_future_seconds or now > issued + parts.expiration_seconds:
        return AuthFailure(
            "RequestExpired",
            f"signature timestamp {parts.timestamp} with expiration "
            f"{parts.expiration_seconds} s is not valid at the server's time",
        )
    # Exactly the listed headers (what the official SDK and this project sign), or those
    # plus every x-bce-* header, as Baidu's bce-python-sdk signs whether listed or not.
    for implicit_bce in (False, True):
        request = canonical_request_for(
            method, raw_path, query, headers, parts.signed_headers, include_bce_headers=implicit_bce
        )
        if hmac.compare_digest(signature_for(credentials, parts.prefix, request), parts.signature):
            return None
    return AuthFailure(
        "SignatureDoesNotMatch",
        "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match",
    )
