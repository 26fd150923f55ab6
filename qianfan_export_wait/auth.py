"""AK/SK credentials and the ``bce-auth-v1`` request signer.

Pure code: no I/O, no clock unless the caller leaves ``timestamp`` out. The rules follow
Baidu's own ``bce-python-sdk`` signer byte for byte (``baidubce/auth/bce_v1_signer.py``):

* ``authStringPrefix = bce-auth-v1/{ak}/{timestamp}/{expiration}``
* ``signingKey = hex(HMAC-SHA256(sk, authStringPrefix))``
* ``canonicalRequest = METHOD \\n canonicalURI \\n canonicalQuery \\n canonicalHeaders``
* ``signature = hex(HMAC-SHA256(signingKey, canonicalRequest))``

Like Baidu's signer, every ``x-bce-*`` header present is part of the canonical headers,
and ``headers_to_sign=None`` (or empty) signs the default set and leaves the
signedHeaders field of the Authorization value empty (``.../1800//signature``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ._checks import check_count
from .errors import MissingCredentialsError

__all__ = [
    "DEFAULT_HEADERS_TO_SIGN",
    "AuthorizationParts",
    "Credentials",
    "MissingCredentialsError",
    "canonical_headers",
    "canonical_query",
    "canonical_time",
    "parse_authorization",
    "sign",
    "signature_for",
    "uri_encode",
]

ACCESS_KEY_ENV = "QIANFAN_ACCESS_KEY"
SECRET_KEY_ENV = "QIANFAN_SECRET_KEY"
AUTH_VERSION = "bce-auth-v1"
DEFAULT_HEADERS_TO_SIGN = frozenset({"host", "content-md5", "content-length", "content-type"})
_BCE_PREFIX = b"x-bce-"
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _is_timestamp(text: str) -> bool:
    """Whether ``text`` is exactly ``YYYY-MM-DDTHH:MM:SSZ`` (ASCII digits) and a real moment."""
    if not _TIMESTAMP_RE.fullmatch(text):
        return False
    try:
        datetime.strptime(text, _TIMESTAMP_FORMAT)
    except ValueError:
        return False
    return True


def _mask(access_key: str) -> str:
    return f"{access_key[:4]}..." if len(access_key) > 4 else access_key


@dataclass(frozen=True, slots=True)
class Credentials:
    """An AK/SK pair. Its ``repr`` and ``str`` show only the start of the access key."""

    access_key: str
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in (("access_key", self.access_key), ("secret_key", self.secret_key)):
            if not isinstance(value, str):
                raise MissingCredentialsError(
                    f"{name} must be a string, got {type(value).__name__}"
                )
            if not value.strip():
                raise MissingCredentialsError(f"{name} is empty; expected a Qianfan AK/SK value")
        if self.access_key != self.access_key.strip() or any(
            ch in self.access_key for ch in "\r\n\0/ "
        ):
            raise MissingCredentialsError(
                f"access_key {self.masked_access_key!r} contains whitespace, '/' or control "
                "characters; expected the key exactly as the console shows it"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``QIANFAN_ACCESS_KEY`` and ``QIANFAN_SECRET_KEY`` (the official SDK's names)."""
        env = os.environ if environ is None else environ
        access_key = env.get(ACCESS_KEY_ENV, "")
        secret_key = env.get(SECRET_KEY_ENV, "")
        missing = [
            name
            for name, value in ((ACCESS_KEY_ENV, access_key), (SECRET_KEY_ENV, secret_key))
            if not value.strip()
        ]
        if missing:
            raise MissingCredentialsError(
                f"{' and '.join(missing)} not set or empty; export the AK/SK of your "
                "Baidu AI Cloud account (the same variables the official qianfan SDK reads)"
            )
        return cls(access_key, secret_key)

    @property
    def masked_access_key(self) -> str:
        """The access key shortened to its first four characters, safe to log."""
        return _mask(self.access_key)

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.masked_access_key!r}, secret_key=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Credentials are not picklable, so the secret key never leaves memory")


def _normalized_table() -> list[bytes]:
    table = [b"%%%02X" % i for i in range(256)]
    for ch in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.~-_":
        table[ch] = bytes([ch])
    return table


_NORMALIZED = _normalized_table()
_SLASH = ord("/")


def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def uri_encode(value: object, *, keep_slash: bool = False) -> str:
    """Percent-encode everything but ``A-Z a-z 0-9 - . _ ~`` (and ``/`` if asked), as BCE does."""
    raw = _to_bytes(value)
    if keep_slash:
        return b"".join(b"/" if b == _SLASH else _NORMALIZED[b] for b in raw).decode("ascii")
    return b"".join(_NORMALIZED[b] for b in raw).decode("ascii")


def canonical_time(timestamp: str | datetime | int | float | None = None) -> str:
    """Format a timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC); ``None`` means now."""
    if timestamp is None:
        moment = datetime.now(UTC)
    elif isinstance(timestamp, str):
        if not _is_timestamp(timestamp):
            raise ValueError(f"timestamp {timestamp!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
        return timestamp
    elif isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be an aware datetime (naive datetimes are ambiguous)")
        moment = timestamp.astimezone(UTC)
    elif isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ValueError(
            f"timestamp must be str, aware datetime or epoch seconds, got {timestamp!r}"
        )
    else:
        moment = datetime.fromtimestamp(int(timestamp), UTC)
    return moment.strftime(_TIMESTAMP_FORMAT)


def canonical_query(query: Mapping[str, object] | None) -> str:
    """The canonical query string: encoded ``k=v`` pairs, sorted, ``authorization`` left out."""
    if not query:
        return ""
    pairs = [
        f"{uri_encode(key)}={uri_encode('' if value is None else value)}"
        for key, value in query.items()
        if key.lower() != "authorization"
    ]
    pairs.sort()
    return "&".join(pairs)


def canonical_headers(
    headers: Mapping[str, object] | None,
    headers_to_sign: Iterable[str] | None,
    *,
    include_bce_headers: bool = True,
) -> str:
    """The canonical headers block: ``name:value`` lines, encoded and sorted.

    A header whose value is empty after trimming is left out, as Baidu's signer does.

    With ``include_bce_headers`` (Baidu's signer) every ``x-bce-*`` header is signed too;
    a verifier passes ``False`` to sign exactly the listed names.
    """
    wanted = (
        {name.strip().lower() for name in headers_to_sign}
        if headers_to_sign
        else set(DEFAULT_HEADERS_TO_SIGN)
    )
    wanted_bytes = {name.encode("utf-8") for name in wanted}
    lines: list[bytes] = []
    for name, value in (headers or {}).items():
        lowered = _to_bytes(name).strip().lower()
        trimmed = _to_bytes(value).strip()
        if not trimmed:
            continue
        if lowered in wanted_bytes or (include_bce_headers and lowered.startswith(_BCE_PREFIX)):
            lines.append(f"{uri_encode(lowered)}:{uri_encode(trimmed)}".encode("ascii"))
    lines.sort()
    return b"\n".join(lines).decode("ascii")


def _auth_prefix(access_key: str, timestamp: str, expiration_seconds: int) -> str:
    return f"{AUTH_VERSION}/{access_key}/{timestamp}/{expiration_seconds}"


def signature_for(credentials: Credentials, auth_string_prefix: str, canonical_request: str) -> str:
    """The hex signature of ``canonical_request`` under the key derived for the prefix."""
    signing_key = hmac.new(
        credentials.secret_key.encode("utf-8"),
        auth_string_prefix.encode("utf-8"),
        hashlib.sha256,
    ).hexdigest()
    return hmac.new(
        signing_key.encode("ascii"), canonical_request.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def sign(
    credentials: Credentials,
    *,
    method: str,
    path: str,
    query: Mapping[str, object] | None = None,
    headers: Mapping[str, object] | None = None,
    timestamp: str | datetime | int | float | None = None,
    expiration_seconds: int = 1800,
    headers_to_sign: Iterable[str] | None = None,
) -> str:
    """Return the ``Authorization`` value (``bce-auth-v1/...``) for one request."""
    check_count("expiration_seconds", expiration_seconds)
    names = sorted({name.strip().lower() for name in headers_to_sign or ()})
    prefix = _auth_prefix(credentials.access_key, canonical_time(timestamp), expiration_seconds)
    request = "\n".join(
        (
            method.upper(),
            uri_encode(path, keep_slash=True),
            canonical_query(query),
            canonical_headers(headers, names),
        )
    )
    return f"{prefix}/{';'.join(names)}/{signature_for(credentials, prefix, request)}"


@dataclass(frozen=True, slots=True)
class AuthorizationParts:
    """The fields of a parsed ``bce-auth-v1`` Authorization value."""

    access_key: str
    timestamp: str
    expiration_seconds: int
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def prefix(self) -> str:
        """The ``authStringPrefix`` the signing key is derived from."""
        return _auth_prefix(self.access_key, self.timestamp, self.expiration_seconds)

    @property
    def issued_at(self) -> datetime:
        """The signing time as an aware UTC datetime."""
        return datetime.strptime(self.timestamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def parse_authorization(value: str) -> AuthorizationParts:
    """Split an Authorization value; ``ValueError`` names what is malformed."""
    parts = value.strip().split("/")
    if len(parts) != 6 or parts[0] != AUTH_VERSION:
        raise ValueError(
            "Authorization must look like bce-auth-v1/{ak}/{timestamp}/{expiration}/"
            "{signedHeaders}/{signature}"
        )
    _, access_key, timestamp, expiration, signed, signature = parts
    if not access_key:
        raise ValueError("Authorization has an empty access key")
    if not _is_timestamp(timestamp):
        raise ValueError(f"Authorization timestamp {timestamp!r} is not YYYY-MM-DDTHH:MM:SSZ")
    if not (expiration.isascii() and expiration.isdigit()) or int(expiration) <= 0:
        raise ValueError(f"Authorization expiration {expiration!r} is not a positive integer")
    if not re.fullmatch(r"[0-9a-f]{64}", signature):
        raise ValueError("Authorization signature is not 64 lowercase hex digits")
    signed_headers = tuple(name for name in signed.split(";") if name)
    return AuthorizationParts(access_key, timestamp, int(expiration), signed_headers, signature)
