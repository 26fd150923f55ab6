"""Where requests go, shared by the client, the downloader and the test fixture: the
endpoint rule, the ``Host`` value, loopback hosts, and the V1 status request's signed
headers. Pure code (URLs are ``yarl``'s): no I/O, no import of the client or downloads."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime

from yarl import URL

from .auth import Credentials, canonical_time, sign
from .errors import ConfigurationError
from .protocol import EXPORT_STATUS_PATH, JSON_CONTENT_TYPE, MAX_RESPONSE_BYTES, SIGNED_HEADERS
from .protocol.skew import MAX_CLOCK_OFFSET

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "EXPORT_STATUS_PATH",
    "MAX_CLOCK_OFFSET",
    "MAX_RESPONSE_BYTES",
    "SIGNATURE_EXPIRATION_SECONDS",
    "SIGNED_HEADERS",
    "host_header",
    "is_loopback_host",
    "status_request_headers",
    "validate_base_url",
]

BASE_URL_ENV = "QIANFAN_CONSOLE_API_BASE_URL"
DEFAULT_BASE_URL = "https://qianfan.baidubce.com"
SIGNATURE_EXPIRATION_SECONDS = 1800
_USERINFO = re.compile(r"^([^/?#]*//)?[^/?#@]*@")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address (IPv6 in brackets or not)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(value: str, *, allow_insecure_http: bool = False) -> URL:
    """Check an endpoint such as ``https://qianfan.baidubce.com`` and return it as a URL.

    Raises ``ConfigurationError`` for a missing scheme or host, a path, a query, embedded
    credentials, or plain ``http`` to a host other than loopback (unless allowed).
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"endpoint {value!r} is empty; expected e.g. {DEFAULT_BASE_URL}")
    text = value.strip()
    # Messages echo the endpoint, so any user:password@ in it is masked first.
    shown = _USERINFO.sub(r"\1***@", text)
    if shown != text:
        raise ConfigurationError(
            f"endpoint {shown!r} must not carry credentials (user:password@); "
            "use QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY"
        )
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"endpoint {text!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"endpoint {text!r} needs a scheme and a host, e.g. {DEFAULT_BASE_URL}"
        )
    if url.user is not None or url.password is not None:
        raise ConfigurationError(
            "endpoint must not carry credentials (user:password@); "
            "use QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY"
        )
    # yarl folds dot segments away ("/a/.." becomes "/"), so look at the text as given too.
    given_path = urllib.parse.urlsplit(text).path
    if (
        url.raw_path not in ("", "/")
        or given_path not in ("", "/")
        or url.raw_query_string
        or url.raw_fragment
    ):
        raise ConfigurationError(
            f"endpoint {text!r} has a path, query or fragment; expected only scheme://host[:port]"
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.host):
        raise ConfigurationError(
            f"endpoint {text!r} uses plain http to a non-loopback host; use https, or allow "
            "it with --insecure-http (allow_insecure_http=True in Python)"
        )
    return url.with_path("/")


def host_header(url: URL) -> str:
    """The ``Host`` value for ``url``: the host, bracketed if IPv6, with a non-default port."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def status_request_headers(
    credentials: Credentials,
    host: str,
    timestamp: str | int | float | datetime | None = None,
    *,
    expiration_seconds: int = SIGNATURE_EXPIRATION_SECONDS,
    headers_to_sign: tuple[str, ...] | None = SIGNED_HEADERS,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of one signed V1 status ``POST`` to ``host`` (``name[:port]``).
    ``timestamp`` defaults to now (the one clock read here, kept for today's callers)."""
    signed_at = canonical_time(timestamp)
    headers = {"Host": host, "Content-Type": JSON_CONTENT_TYPE, **(extra_headers or {})}
    headers["x-bce-date"] = signed_at
    headers["Authorization"] = sign(
        credentials,
        method="POST",
        path=EXPORT_STATUS_PATH,
        headers=headers,
        timestamp=signed_at,
        expiration_seconds=expiration_seconds,
        headers_to_sign=headers_to_sign,
    )
    return headers
