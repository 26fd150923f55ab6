"""The decisions of a download, free of I/O and of the clock: where a Done export's file
comes from, what it is called on disk, what a storage answer means, and whether the bytes
received are the file. ``download.py`` drives them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from ..auth import parse_authorization
from ..errors import (
    ChecksumError,
    DownloadSourceError,
    LinkExpiredError,
    TransferError,
)
from ..models import ExportId, ExportState, ExportStatus
from .bos import BosObject

__all__ = [
    "MAX_NAME_BYTES",
    "OBJECT_CHANGED",
    "BodyPlan",
    "Expected",
    "LocalLink",
    "Source",
    "check_received",
    "export_dir_name",
    "file_name_for",
    "is_loopback_host",
    "link_expires_at",
    "md5_of_etag",
    "plan_body",
    "safe_name",
    "source_for",
    "validate_download_url",
]

MAX_NAME_BYTES = 160
"""Longest file or folder name written, in UTF-8 bytes: room under the usual 255 for the
``.<name>.part`` temporary beside it."""

OBJECT_CHANGED = "ObjectChanged"
"""``TransferError.code`` when the stored object is not the one a partial file began: the
partial is dropped and the transfer starts again from byte 0."""

_UNSAFE_CHARACTERS = re.compile(r'[\\/:*?"<>|]')
_WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address (IPv6 in brackets or not)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def safe_name(text: str, fallback: str) -> str:
    """``text`` made safe as one file name inside a folder, else ``fallback``.

    Path separators and ``: * ? " < > |`` become ``_``; control and format characters go;
    leading dots and spaces go (so ``..`` and hidden names cannot arise) as do trailing
    ones; Windows device names get a ``_`` in front; the result is cut to
    ``MAX_NAME_BYTES`` UTF-8 bytes, keeping a short extension.
    """
    name = unicodedata.normalize("NFC", text)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARACTERS.sub("_", name).strip(". ")
    if _WINDOWS_RESERVED.fullmatch(name):
        name = f"_{name}"
    name = _truncate(name)
    return name if name else fallback


def _truncate(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(". ")
    return f"{cut}{suffix}"


def export_dir_name(export_id: ExportId) -> str:
    """The folder of one export's files: ``str(export_id)`` made safe."""
    return safe_name(str(export_id), fallback="export")


@dataclass(frozen=True, slots=True)
class LocalLink:
    """A ``local`` export's presigned ``downloadUrl``; fetched as it is, with no
    Authorization of ours."""

    url: URL


Source = LocalLink | BosObject
"""Where a Done export's file is: a link (``local``) or an object in the user's bucket."""


def validate_download_url(text: str, *, allow_insecure_http: bool = False) -> URL:
    """``text`` as a URL fit to download from, or ``DownloadSourceError`` saying why.

    It needs ``https`` (``http`` only to a loopback host, unless allowed), a host, and no
    ``user:password@``. The URL is kept exactly as given (its query is the signature).
    """
    try:
        url = URL(text, encoded=True)
    except (TypeError, ValueError) as exc:
        raise DownloadSourceError(f"downloadUrl is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise DownloadSourceError("downloadUrl needs an http(s) scheme and a host")
    if url.raw_user is not None or url.raw_password is not None or "@" in url.raw_authority:
        raise DownloadSourceError("downloadUrl must not carry user:password@")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.raw_host):
        raise DownloadSourceError(
            f"downloadUrl uses plain http to {url.raw_host!r}; only https is accepted "
            "(or http to a loopback address)"
        )
    return url


def source_for(status: ExportStatus, *, allow_insecure_http: bool = False) -> Source:
    """Where ``status``'s file is: its ``downloadUrl`` (``local``) or ``volumeId`` +
    ``exportPath`` (``storage``). An unknown ``exportType`` uses whichever is present."""
    if status.state is not ExportState.DONE:
        raise DownloadSourceError(
            f"export is {status.state_name}, not Done: there is no file yet",
            export_id=status.export_id,
        )
    wants_storage = status.export_type == "storage" or (
        status.export_type != "local" and not status.download_url
    )
    try:
        if wants_storage:
            if not status.volume_id or not status.export_path:
                raise DownloadSourceError(
                    "a storage export needs volumeId and exportPath; the status has "
                    f"volumeId={status.volume_id!r}, exportPath={status.export_path!r}"
                )
            return BosObject(status.volume_id, status.export_path)
        if not status.download_url:
            raise DownloadSourceError("a local export needs a downloadUrl; the status has none")
        return LocalLink(
            validate_download_url(status.download_url, allow_insecure_http=allow_insecure_http)
        )
    except DownloadSourceError as error:
        error.export_id = status.export_id
        raise


def file_name_for(source: Source, export_id: ExportId) -> str:
    """The file's name on disk: the last part of the URL path or object key, made safe
    (fallback ``export-<id>``)."""
    if isinstance(source, LocalLink):
        last = urllib.parse.unquote(source.url.raw_path.rpartition("/")[2])
    else:
        last = source.key.rpartition("/")[2]
    return safe_name(last, fallback=f"export-{export_dir_name(export_id)}")


def link_expires_at(url: URL) -> float | None:
    """When a BOS presigned link stops working (epoch seconds), from its ``authorization``
    query parameter; ``None`` when it has none or it cannot be read."""
    value = url.query.get("authorization")
    if not value:
        return None
    try:
        parts = parse_authorization(value)
    except ValueError:
        return None
    return parts.issued_at.timestamp() + parts.expiration_seconds


@dataclass(frozen=True, slots=True)
class Expected:
    """What the storage says the whole file is: its size, and MD5 / SHA-256 when known."""

    size: int | None
    etag: str | None
    md5: bytes | None
    sha256_hex: str | None


@dataclass(frozen=True, slots=True)
class BodyPlan:
    """How to take a response body: it starts at byte ``offset`` of the file (0 means any
    partial file is dropped), and the file is ``expected``."""

    offset: int
    expected: Expected


def _etag(headers: Mapping[str, str]) -> str | None:
    value = headers.get("ETag") or headers.get("etag")
    return value.strip() if value else None


def md5_of_etag(etag: str | None) -> bytes | None:
    """The MD5 a strong ETag states (a simple upload's quoted hex MD5), else ``None`` (a
    weak or multipart ETag proves nothing about the bytes)."""
    return _md5_of(etag, None)


def _md5_of(etag: str | None, content_md5: str | None) -> bytes | None:
    if content_md5:
        try:
            digest = base64.b64decode(content_md5.strip(), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) == 16:
            return digest
    if etag:
        # A simple upload's ETag is the hex MD5; a multipart one ("...-3") is not.
        bare = etag.removeprefix("W/").strip('"')
        if _HEX_MD5.fullmatch(bare) and not etag.startswith("W/"):
            return bytes.fromhex(bare)
    return None


def plan_body(
    status: int,
    headers: Mapping[str, str],
    offset: int,
    *,
    is_link: bool,
    known: Expected | None = None,
) -> BodyPlan:
    """What an answer to a GET from byte ``offset`` means, before any byte is written.

    Raises ``LinkExpiredError`` (HTTP 403 on a link), ``TransferError`` (HTTP 408, 429,
    5xx; an answer that does not start where asked; ``code=OBJECT_CHANGED`` for HTTP
    412/416 or an ETag that differs from ``known``), ``DownloadSourceError`` (other
    answers, e.g. 404, a redirect, or 403 from BOS to a signed request).
    """
    code = headers.get("x-bce-error-code") or headers.get("X-Bce-Error-Code")
    if status in (412, 416):
        raise TransferError(
            f"the stored file changed since byte {offset} (HTTP {status}); starting again",
            http_status=status,
            code=OBJECT_CHANGED,
        )
    if status == 403:
        if is_link:
            raise LinkExpiredError(
                "the download link was refused (HTTP 403): expired or revoked",
                http_status=status,
                code=code,
            )
        raise DownloadSourceError(
            "BOS refused the signed GetObject (HTTP 403): check the bucket's owner and "
            "the AK/SK's permissions",
            http_status=status,
            code=code,
        )
    if status in (408, 429) or status >= 500:
        raise TransferError(f"storage answered HTTP {status}", http_status=status, code=code)
    if status not in (200, 206):
        what = "redirect not followed" if 300 <= status < 400 else "storage refused the file"
        raise DownloadSourceError(f"{what} (HTTP {status})", http_status=status, code=code)
    etag = _etag(headers)
    length_text = headers.get("Content-Length") or headers.get("content-length")
    length = (
        int(length_text)
        if length_text and length_text.isascii() and length_text.isdigit()
        else None
    )
    if status == 206:
        match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
        if match is None or int(match.group(1)) != offset:
            raise TransferError(
                f"asked for bytes from {offset}, got Content-Range "
                f"{headers.get('Content-Range')!r}",
                http_status=status,
            )
        total_text = match.group(3)
        size = None if total_text == "*" else int(total_text)
        start = offset
    else:
        size, start = length, 0
    if start > 0:
        # Bytes held are taken as a prefix only when the answer's own ETag is the whole
        # object's MD5 and the one they were begun under: the whole file is then checked
        # against it at the end. Anything else starts again from byte 0.
        md5 = _md5_of(etag, None)
        if known is None or md5 is None or etag != known.etag:
            raise TransferError(
                "the stored file's ETag changed, or is not an MD5 that can prove the "
                f"bytes held (ETag {etag!r}); starting again",
                http_status=status,
                code=OBJECT_CHANGED,
            )
        return BodyPlan(start, Expected(size=size, etag=etag, md5=md5, sha256_hex=None))
    sha256 = headers.get("x-bce-content-sha256") or headers.get("X-Bce-Content-Sha256")
    expected = Expected(
        size=size,
        etag=etag,
        md5=_md5_of(etag, headers.get("Content-MD5") if status == 200 else None),
        sha256_hex=sha256.lower() if sha256 and _HEX_SHA256.fullmatch(sha256) else None,
    )
    return BodyPlan(start, expected)


def check_received(
    expected: Expected, size: int, md5: bytes, sha256_hex: str
) -> ChecksumError | None:
    """``None`` if the bytes received are the file ``expected`` describes, else the error."""
    if expected.size is not None and size != expected.size:
        return ChecksumError(f"received {size} bytes, Content-Length said {expected.size}")
    if expected.md5 is not None and md5 != expected.md5:
        return ChecksumError(
            f"MD5 of the bytes received is {md5.hex()}, the storage said {expected.md5.hex()}"
        )
    if expected.sha256_hex is not None and sha256_hex != expected.sha256_hex:
        return ChecksumError("SHA-256 of the bytes received differs from x-bce-content-sha256")
    return None
