"""Last statuses kept small: many pending exports keep theirs packed."""

from __future__ import annotations

import marshal
import zlib
from typing import Any

from ..models import ExportStatus, parse_export_status

__all__ = ["StatusPacker"]


class StatusPacker:
    """Packs a status into about 90 bytes where the object takes a kilobyte: its log id,
    then its values marshalled and deflated against the first status packed (statuses
    share most of their text: keys, states, path prefixes)."""

    __slots__ = ("_inflate", "_keys", "_primed", "_zdict")

    def __init__(self) -> None:
        self._keys: tuple[str, ...] | None = None
        self._zdict = b""
        # A compressor with the dictionary loaded, copied for each status: cheaper than
        # loading the dictionary into a new one every time.
        self._primed: Any = None
        self._inflate: Any = None

    @staticmethod
    def _log_id(log_id: str | None) -> bytes:
        """A two-byte length (65535: none), then the log id's text."""
        if log_id is None:
            return b"\xff\xff"
        text = log_id.encode("utf-8", "surrogatepass")
        return len(text).to_bytes(2, "little") + text

    @staticmethod
    def _split(packed: bytes) -> tuple[str | None, int]:
        size = int.from_bytes(packed[:2], "little")
        if size == 0xFFFF:
            return None, 2
        return packed[2 : 2 + size].decode("utf-8", "surrogatepass"), 2 + size

    def pack(self, status: ExportStatus) -> bytes:
        """The status packed."""
        raw = status.raw
        keys = tuple(raw)
        if self._keys is None:
            self._keys = keys
            self._zdict = marshal.dumps(tuple(raw.values()))
            self._primed = zlib.compressobj(1, zlib.DEFLATED, -9, 1, zdict=self._zdict)
            self._inflate = zlib.decompressobj(-9, zdict=self._zdict)
        payload = marshal.dumps(tuple(raw.values()) if keys == self._keys else dict(raw))
        packer = self._primed.copy()
        body: bytes = packer.compress(payload) + packer.flush()
        return self._log_id(status.log_id) + body

    def with_log_id(self, packed: bytes, log_id: str | None) -> bytes:
        """``packed`` with another log id (no unpacking: the cheap update)."""
        return self._log_id(log_id) + packed[self._split(packed)[1] :]

    def unpack(self, packed: bytes) -> ExportStatus:
        """The status packed."""
        log_id, start = self._split(packed)
        inflate = self._inflate.copy()
        values = marshal.loads(inflate.decompress(packed[start:]))
        raw = (
            values if isinstance(values, dict) else dict(zip(self._keys or (), values, strict=True))
        )
        return parse_export_status({"log_id": log_id, "result": raw})
