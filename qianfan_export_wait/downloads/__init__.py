"""Downloads beside the waiter: fetch each Done export's file, verified, resumable, never
outside the destination folder (``Downloader``), one file or a whole stream of outcomes
(``DownloadStage``, ``download_each``).

For one export, in order:

1. Where: ``downloadUrl`` for a ``local`` export (a presigned link, fetched as it is), a
   signed BOS ``GetObject`` of ``volumeId``/``exportPath`` for a ``storage`` one (see
   ``bos.py``). The file goes to ``dest_dir/<exportID>/<name>``, both names made safe
   (``rules.safe_name``). A file already at the target is hashed and confirmed
   with ``If-None-Match`` (its MD5 as the ETag): HTTP 304, or an answer whose validators
   match it, keeps it unfetched; anything else fetches the whole file to replace it.
2. The export's folder is opened without following a link and locked (``flock``) while
   its file is fetched, so two runs never write the same file at once. Every file in it
   is reached through that folder (``dir_fd``) with ``lstat`` and ``O_NOFOLLOW``: a
   ``.part``, note or target that is a link, a fifo, a folder... is refused
   (``UnsafeFileError``), never followed or opened.
3. The answer's status and headers are checked before a byte is written; the body streams
   into ``.<name>.part`` beside the target. A transfer that moves less than 64 KiB in
   ``stall_timeout`` seconds, or passes the caller's ``deadline``, ends with
   ``DownloadTimeoutError``; a file over ``max_bytes`` with ``DownloadTooLargeError``.
4. A transfer that breaks mid-body resumes from the bytes on disk with ``Range`` and
   ``If-Match``: the ETag it began under is kept in ``.<name>.part.json``, and only a
   strong MD5 ETag is kept, so that the whole file can be proven against it. The bytes
   held are never believed: an answer whose own ETag is not that MD5 ETag starts again
   from byte 0. A link that answers HTTP 403, or whose signature has expired, is
   replaced by polling the status again (``refresh``).
5. The whole file is read back from disk and its size must equal ``Content-Length`` (or
   the ``Content-Range`` total), its MD5 ``Content-MD5`` or the ETag (when it is a plain
   MD5), its SHA-256 ``x-bce-content-sha256`` when sent: the server's validators, never
   the note's. A mismatch drops the partial file and fetches the whole file again. The
   record (size, SHA-256) is that of the bytes read back.
6. Rename into place atomically, check that what landed is the file verified, ``fsync``
   the folder.

Retries follow a bounded tenacity schedule (``max_attempts``, ``retry_wait``). Downloads
go to storage, never to the rate-limited status API, except to refresh an expired link
(give ``refresh=waiter.refresh`` so that poll is inside the waiter's limits).

The modules: ``rules`` (the decisions, free of I/O), ``bos`` (signed ``GetObject``),
``extract`` (safe unzip), ``files`` (the files on disk), ``records``, ``fetch``
(``Downloader``) and ``stage`` (``DownloadStage``, ``download_each``). Names are imported
on first use, so ``rules`` and ``bos`` load no event loop or HTTP library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .extract import ExtractLimits, safe_extract
    from .fetch import Downloader
    from .files import read_partial_note, verify_record_on_disk
    from .records import DownloadProgress, DownloadRecord, ProgressHook, Refresh
    from .stage import Downloaded, DownloadStage, download_each

_HOMES = {
    "Downloaded": "stage",
    "DownloadProgress": "records",
    "DownloadRecord": "records",
    "DownloadStage": "stage",
    "Downloader": "fetch",
    "ExtractLimits": "extract",
    "ProgressHook": "records",
    "Refresh": "records",
    "download_each": "stage",
    "read_partial_note": "files",
    "safe_extract": "extract",
    "verify_record_on_disk": "files",
}

__all__ = [
    "DownloadProgress",
    "DownloadRecord",
    "DownloadStage",
    "Downloaded",
    "Downloader",
    "ExtractLimits",
    "ProgressHook",
    "Refresh",
    "download_each",
    "read_partial_note",
    "safe_extract",
    "verify_record_on_disk",
]

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
