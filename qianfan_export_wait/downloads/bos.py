"""BOS ``GetObject`` for ``storage`` exports, built the way Baidu's ``bce-python-sdk`` builds
it (``BosClient.get_object`` -> ``_send_request`` -> ``bce_http_client.send_request``,
version 0.9.79). Pure: the caller passes the time and sends the request.

What the SDK does, and this module reproduces (``tests/vectors/make_bos_vectors.py``
captures the SDK's requests and ``tests/rules/test_bos.py`` compares them byte for byte):

* The host: an endpoint of the form ``<region>.bcebos.com`` gets the bucket in front
  (virtual-hosted, ``modelrepo-test.bj.bcebos.com``) and the path is ``/<key>``; an
  endpoint that already starts with the bucket, or a ``*.cdn.bcebos.com`` one, is used as
  it is with ``/<key>``; any other host (an IP address, ``localhost``) gets path style,
  ``/<bucket>/<key>``.
* The path is URI-encoded with ``/`` kept (``baidubce.utils.normalize_string``: all but
  ``A-Z a-z 0-9 . ~ - _``) and sent exactly so; the key must not be empty nor start with
  ``/`` (the SDK's checks). Beyond the SDK, a key with a ``.`` or ``..`` segment, over
  1024 bytes or with control characters, and a bucket name that breaks BOS's naming rule
  (``check_bucket_valid``: 3-63 of ``a-z 0-9 -``, no ``-`` at either end) are refused
  with ``DownloadSourceError`` before anything is built.
* The headers: ``Host`` (with the port only when it is not the scheme's default),
  ``Content-Length: 0``, ``x-bce-date`` and ``Authorization``, plus ``Range: bytes=a-b``
  when a range is asked for. The signature covers Baidu's default set (``host``,
  ``content-length``, and every ``x-bce-*`` header), so the Authorization's signedHeaders
  field is empty: ``bce-auth-v1/{ak}/{date}/1800//{signature}``. ``Range`` is not signed.

The default endpoint is ``https://bj.bcebos.com`` (Beijing), the region Qianfan exports to
unless your bucket lives elsewhere; set ``QIANFAN_BOS_ENDPOINT`` (e.g.
``https://su.bcebos.com``) or pass ``bos_endpoint``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime

from yarl import URL

from ..auth import Credentials, canonical_time, sign, uri_encode
from ..errors import ConfigurationError, DownloadSourceError

__all__ = [
    "BOS_ENDPOINT_ENV",
    "DEFAULT_BOS_ENDPOINT",
    "BosObject",
    "bos_endpoint_from_env",
    "get_object_headers",
    "object_url",
]

BOS_ENDPOINT_ENV = "QIANFAN_BOS_ENDPOINT"
DEFAULT_BOS_ENDPOINT = "https://bj.bcebos.com"
SIGNATURE_EXPIRATION_SECONDS = 1800
MAX_KEY_BYTES = 1024
"""Longest object key BOS stores, in UTF-8 bytes."""
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_BOS_SUFFIX = "bcebos.com"
_CNAME_LIKE_SUFFIX = ".cdn.bcebos.com"
# The SDK's check_ipv4 is a regex .match(): a host that starts like an IPv4 address.
_IPV4_START = re.compile(
    r"((2(5[0-5]|[0-4]\d))|[0-1]?\d{1,2})(.((2(5[0-5]|[0-4]\d))|[0-1]?\d{1,2})){3}"
)


def bos_endpoint_from_env() -> str:
    """``QIANFAN_BOS_ENDPOINT`` if set, else ``https://bj.bcebos.com``."""
    return os.environ.get(BOS_ENDPOINT_ENV) or DEFAULT_BOS_ENDPOINT


@dataclass(frozen=True, slots=True)
class BosObject:
    """A ``storage`` export's object: ``bucket`` is the status's ``volumeId``, ``key`` its
    ``exportPath``."""

    bucket: str
    key: str

    def __post_init__(self) -> None:
        if not _BUCKET_NAME.fullmatch(self.bucket):
            # The SDK's check_bucket_valid: a name BOS could never have given a bucket.
            raise DownloadSourceError(
                f"volumeId {self.bucket!r} is not a BOS bucket name: expected 3-63 "
                "characters of a-z, 0-9 and '-', starting with a letter or digit and not "
                "ending with '-'"
            )
        if not self.key or self.key.startswith("/"):
            # The SDK's own check: "Key can not be empty or start with '/'".
            raise DownloadSourceError(f"exportPath {self.key!r} is empty or starts with '/'")
        if not self.key.isprintable():
            raise DownloadSourceError(f"exportPath {self.key!r} contains control characters")
        if len(self.key.encode("utf-8")) > MAX_KEY_BYTES:
            raise DownloadSourceError(
                f"exportPath {self.key[:60]!r}... is longer than BOS's {MAX_KEY_BYTES} bytes"
            )
        if {".", ".."} & set(self.key.split("/")):
            raise DownloadSourceError(
                f"exportPath {self.key!r} has a '.' or '..' segment: HTTP stacks resolve "
                "those, so it cannot name one object safely"
            )


def object_url(endpoint: URL, obj: BosObject) -> tuple[URL, str]:
    """The URL to send (path already encoded) and the raw path to sign, for ``obj`` at
    ``endpoint`` (``scheme://host[:port]``), by the SDK's host and path rules."""
    host = endpoint.raw_host or ""
    lowered = host.lower()
    labels = lowered.split(".")
    is_bos_host = lowered.endswith(_BOS_SUFFIX)
    is_cname_like = lowered.endswith(_CNAME_LIKE_SUFFIX)
    if not _IPV4_START.match(host) and not is_cname_like and is_bos_host:
        if len(labels) == 3:  # <region>.bcebos.com: the bucket goes in front of it
            host, lowered = f"{obj.bucket}.{host}", f"{obj.bucket.lower()}.{lowered}"
        elif len(labels) == 4 and labels[0] != obj.bucket.lower():
            raise ConfigurationError(
                f"BOS endpoint {host!r} names another bucket than {obj.bucket!r}; "
                "use the region endpoint, e.g. https://bj.bcebos.com"
            )
    bucket_in_host = is_cname_like or lowered.startswith(obj.bucket.lower())
    raw_path = f"/{obj.key}" if bucket_in_host else f"/{obj.bucket}/{obj.key}"
    url = URL.build(
        scheme=endpoint.scheme,
        host=host,
        port=endpoint.explicit_port,
        path=uri_encode(raw_path, keep_slash=True),
        encoded=True,
    )
    return url, raw_path


def get_object_headers(
    credentials: Credentials,
    url: URL,
    raw_path: str,
    timestamp: str | int | float | datetime | None = None,
    *,
    first_byte: int | None = None,
    last_byte: int | None = None,
) -> dict[str, str]:
    """The signed headers of one ``GetObject`` of ``url`` (from :func:`object_url`).

    ``first_byte`` asks for ``Range: bytes=first-[last]``, unsigned as the SDK sends it.
    """
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if not url.is_default_port():
        host = f"{host}:{url.port}"
    signed_at = canonical_time(timestamp)
    headers: dict[str, str] = {}
    if first_byte is not None:
        headers["Range"] = f"bytes={first_byte}-{'' if last_byte is None else last_byte}"
    headers["Host"] = host
    headers["Content-Length"] = "0"
    headers["x-bce-date"] = signed_at
    headers["Authorization"] = sign(
        credentials,
        method="GET",
        path=raw_path,
        headers=headers,
        timestamp=signed_at,
        expiration_seconds=SIGNATURE_EXPIRATION_SECONDS,
        headers_to_sign=None,
    )
    return headers
