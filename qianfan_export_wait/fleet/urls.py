"""The fleet's errors at start and its Redis URLs: which schemes, and how a URL is shown
with its password masked (never in a log, error or repr)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from ..errors import QianfanError

__all__ = [
    "INSTALL_HINT",
    "REDIS_URL_ENV",
    "FleetAuthError",
    "FleetStartError",
    "FleetUnreachableError",
    "mask_url",
]

REDIS_URL_ENV = "QIANFAN_EXPORT_WAIT_REDIS_URL"
INSTALL_HINT = "pip install 'qianfan-export-wait[redis]'"
_SCHEMES = ("redis", "rediss", "unix")


class FleetStartError(QianfanError):
    """The fleet limiter could not join its fleet on Redis when it started."""


class FleetUnreachableError(FleetStartError):
    """Redis did not answer at start (a wrong host or port, or Redis is down)."""


class FleetAuthError(FleetStartError):
    """Redis refused the URL's credentials at start (a wrong password or user, or no
    permission for the limiter's commands)."""


def mask_url(url: str) -> str:
    """``url`` with its user info and any ``password`` query parameter replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=***" if name.lower() == "password" else f"{name}={value}" if value else name
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _url_secrets(url: str) -> tuple[str, ...]:
    """Every credential in ``url``, raw and decoded, to scrub from error messages."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.netloc.rpartition("@")[0]] if "@" in parts.netloc else []
    found += [parts.username or "", parts.password or ""]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"]
    values = {value for value in found if value}
    values |= {urllib.parse.unquote(value) for value in values}
    return tuple(sorted(values, key=len, reverse=True))


def _scrub(text: str, hidden: Sequence[str]) -> str:
    for secret in hidden:
        text = text.replace(secret, "***")
    return text
