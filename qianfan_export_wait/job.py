"""The whole export job for many evaluations at once: wait for each evaluation, create
its export (never twice: see ``Journal``), wait for the export, download its file.

Evaluations and exports are polled by two ``ExportWaiter`` instances sharing one rate
limiter and one client (one account, one console QPS, one connection pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import ExportStatusClient
from .downloads import Downloader
from .errors import (
    ApiError,
    ConfigurationError,
    CreateUncertainError,
    DownloadError,
    QianfanError,
)
from .models import ExportId, ExportState, ExportStatus, Phase, validate_export_id
from .protocol import EvalStatus, Operation, V1CreateExportArgs, V2CreateExportArgs, eval_status
from .ratelimit import AdaptiveRateLimiter, AsyncRateLimiter, CappedRateLimiter, RateLimiter
from .waiting import ExportWaiter, PollPolicy

__all__ = ["ExportJobResult", "Journal", "create_args_for", "run_export_job"]

logger = logging.getLogger("qianfan_export_wait")

_PHASE_STATES = {
    Phase.RUNNING: ExportState.PENDING,
    Phase.DONE: ExportState.DONE,
    Phase.FAILED: ExportState.FAIL,
}


@dataclass(frozen=True, slots=True)
class ExportJobResult:
    """How the job ended for one evaluation: ``outcome`` is ``done``, ``failed``,
    ``timeout`` or ``error`` (as ``wait``'s); ``stage`` says where it ended
    (``evaluation``, ``create``, ``export``); ``state`` is the last state seen, as the
    server spelled it; ``file``/``download_error`` as ``wait --download``."""

    eval_id: ExportId
    export_id: ExportId | None
    outcome: str
    stage: str
    state: str | None
    error: QianfanError | None = None
    file: Mapping[str, Any] | None = None
    download_error: DownloadError | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``qianfan-export-wait export`` prints."""
        error: dict[str, Any] | None = None
        if isinstance(self.error, ApiError):
            error = self.error.to_dict()
        elif self.error is not None:
            error = {"code": None, "message": str(self.error), "log_id": None}
        record: dict[str, Any] = {
            "eval_id": self.eval_id,
            "export_id": self.export_id,
            "outcome": self.outcome,
            "stage": self.stage,
            "state": self.state,
            "error": error,
        }
        if self.file is not None:
            record["file"] = dict(self.file)
        if self.download_error is not None:
            record["download_error"] = self.download_error.to_dict()
        return record


class Journal:
    """What creates were started and what they made, in an append-only JSON Lines file,
    each line flushed and fsynced before the job goes on: ``creating`` before a create
    is sent, then ``created`` (with the export id), ``uncertain`` or ``not_created``.

    Reopened after a crash (even ``SIGKILL``), an evaluation with an export id is not
    created again; one with ``creating`` or ``uncertain`` last may have an export the
    journal never heard of, so it is not created again either (its outcome is ``error``,
    ``state`` ``create_uncertain``). A torn last line is ignored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._last: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open("rb") as file:
                for number, line in enumerate(file, 1):
                    try:
                        entry = json.loads(line)
                        key = self._key(entry["eval_id"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("%s line %d is not a journal entry: ignored", path, number)
                        continue
                    self._last[key] = entry
        self._file = self.path.open("ab")
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            # A torn last line (a crash mid-write): end it, or the next entry would be
            # glued to it and lost with it.
            self._file.write(b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    @staticmethod
    def _key(eval_id: object) -> str:
        return json.dumps(eval_id)

    def last(self, eval_id: ExportId) -> dict[str, Any] | None:
        """The last entry for ``eval_id``, if any."""
        return self._last.get(self._key(eval_id))

    def write(self, eval_id: ExportId, event: str, **fields: Any) -> None:
        """Append an entry and make it durable before returning."""
        entry = {"eval_id": eval_id, "event": event, **fields}
        self._file.write(json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last[self._key(eval_id)] = entry

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


class _EvalStatusClient:
    """An evaluation-status call dressed as the waiter's status client, so evaluations
    are polled by the same scheduler as exports: done/failed/running become
    ``Done``/``Fail``/``Pending``; the evaluation's own state stays in ``server_state``."""

    def __init__(self, client: ExportStatusClient, api: str, partly_done_is_done: bool) -> None:
        self._client = client
        self._operation: Operation[Any, EvalStatus] = eval_status(
            api, partly_done_is_done=partly_done_is_done
        )
        self.credentials = client.credentials
        self.base_url = client.base_url
        self._unknown: set[str] = set()

    async def fetch_once(self, eval_id: ExportId) -> ExportStatus:
        answer = await self._client.call(self._operation, eval_id)
        if not answer.state_is_known and answer.state not in self._unknown:
            self._unknown.add(answer.state)
            logger.warning(
                "evaluation %r is in state %r, which this client does not know (%s API); "
                "treating it as running",
                eval_id,
                answer.state,
                answer.api,
            )
        return ExportStatus(
            export_id=eval_id if type(eval_id) is int else 0,
            export_id_str=eval_id if isinstance(eval_id, str) else None,
            id=None,
            id_str=None,
            state=_PHASE_STATES[answer.phase],
            export_type=None,
            volume_id=None,
            export_path=None,
            download_url=None,
            log_id=answer.log_id,
            raw=answer.raw,
            api=answer.api,
            server_state=answer.state,
        )

    get_status = fetch_once


@dataclass(slots=True)
class _Job:
    client: ExportStatusClient
    api: str
    evals: ExportWaiter
    exports: ExportWaiter
    make_args: Any
    journal: Journal | None
    downloader: Downloader | None
    creates: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))

    async def run_one(self, eval_id: ExportId) -> ExportJobResult:
        last = self.journal.last(eval_id) if self.journal is not None else None
        export_id: ExportId | None = None
        if last is not None and last.get("event") == "created":
            export_id = last["export_id"]
        elif last is not None and last.get("event") in ("creating", "uncertain"):
            return ExportJobResult(
                eval_id,
                None,
                "error",
                "create",
                "create_uncertain",
                CreateUncertainError(
                    f"an earlier run started creating an export of evaluation {eval_id!r} "
                    "and did not learn whether it was made; not created again (look it up "
                    "in the console, then remove its lines from the journal to retry)",
                    operation=f"{self.api}.create_export",
                ),
            )
        if export_id is None:
            result = await self._evaluation_then_create(eval_id)
            if isinstance(result, ExportJobResult):
                return result
            export_id = result
        return await self._export(eval_id, export_id)

    async def _evaluation_then_create(self, eval_id: ExportId) -> ExportJobResult | ExportId:
        report = await self.evals.wait_all([eval_id])
        outcome = report.outcomes[0]
        state = outcome.status.state_name if outcome.status is not None else None
        if outcome.kind.value != "done":
            return ExportJobResult(eval_id, None, outcome.kind.value, "evaluation", state,
                                   outcome.error)  # fmt: skip
        args = self.make_args(eval_id)
        async with self.creates:
            if self.journal is not None:
                self.journal.write(eval_id, "creating", api=self.api)
            try:
                created = await self.client.create_export(args)
            except CreateUncertainError as error:
                if self.journal is not None:
                    self.journal.write(eval_id, "uncertain", api=self.api)
                return ExportJobResult(eval_id, None, "error", "create", "create_uncertain",
                                       error)  # fmt: skip
            except ApiError as error:
                if self.journal is not None:
                    self.journal.write(eval_id, "not_created", api=self.api)
                return ExportJobResult(eval_id, None, "error", "create", None, error)
            if self.journal is not None:
                self.journal.write(eval_id, "created", api=self.api, export_id=created.export_id)
        return created.export_id

    async def _export(self, eval_id: ExportId, export_id: ExportId) -> ExportJobResult:
        report = await self.exports.wait_all([export_id])
        outcome = report.outcomes[0]
        status = outcome.status
        state = status.state_name if status is not None else None
        result = ExportJobResult(eval_id, export_id, outcome.kind.value, "export", state,
                                 outcome.error)  # fmt: skip
        if outcome.kind.value != "done" or self.downloader is None or status is None:
            return result
        try:
            # A fresh link is polled by the export waiter: inside the job's rate limit.
            record = await self.downloader.download(status, refresh=self.exports.refresh)
        except DownloadError as error:
            return ExportJobResult(**{**_fields(result), "download_error": error})
        return ExportJobResult(**{**_fields(result), "file": record.to_dict()})


def _fields(result: ExportJobResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in ExportJobResult.__slots__}


def create_args_for(
    api: str, content: Iterable[str] | None, storage: str | None, bucket: str | None
) -> Any:
    """A function making the create arguments of generation ``api`` for an evaluation id;
    a bad ``content``, ``storage`` or ``bucket`` raises ``ConfigurationError`` now."""

    def v1(eval_id: ExportId) -> V1CreateExportArgs:
        options: dict[str, Any] = {}
        if content is not None:
            options["export_content"] = tuple(content)
        if storage is not None:
            options["export_type"] = {"bos": "storage", "sysstorage": "local"}.get(
                storage.casefold(), storage
            )
        if bucket is not None:
            options["volume_id"] = bucket
        return V1CreateExportArgs(eval_id, **options)

    def v2(eval_id: ExportId) -> V2CreateExportArgs:
        options: dict[str, Any] = {}
        if content is not None:
            options["export_content"] = tuple(content)
        if storage is not None:
            options["storage_type"] = {"storage": "BOS", "local": "sysStorage"}.get(
                storage.casefold(), storage
            )
        if bucket is not None:
            options["bucket"] = bucket
        return V2CreateExportArgs(eval_id, **options)  # type: ignore[arg-type]

    maker = v1 if api == "v1" else v2
    for probe in (1,) if api == "v1" else ("ame-probe",):
        maker(probe)  # a bad content, storage or bucket is refused now, before any wait
    return maker


async def run_export_job(
    client: ExportStatusClient,
    eval_ids: Iterable[ExportId],
    *,
    api: str | None = None,
    content: Iterable[str] | None = None,
    storage: str | None = None,
    bucket: str | None = None,
    partly_done_is_done: bool = True,
    policy: PollPolicy | None = None,
    eval_policy: PollPolicy | None = None,
    qps: float | None = None,
    max_in_flight: int = 64,
    downloader: Downloader | None = None,
    journal: Journal | str | os.PathLike[str] | None = None,
    limiter: RateLimiter | AsyncRateLimiter | None = None,
) -> list[ExportJobResult]:
    """Run the whole job for each evaluation: wait until it finishes (``PartlyDone``
    counts as done unless ``partly_done_is_done=False``), create its export (``content``,
    ``storage`` ``local``/``sysStorage`` or ``storage``/``BOS`` with ``bucket``), wait for
    the export, and download its file with ``downloader`` (used as ``async with`` by its
    owner) when given; a refused or expired link is polled again by the job's export
    waiter, within its rate limit, whatever ``refresh`` the downloader has. Returns one
    ``ExportJobResult`` per id, in the order given.

    ``api`` defaults to the client's. With a ``journal`` (a ``Journal`` or a path) every
    create is recorded durably before it is sent and as soon as it answers, so a run
    killed at any point and run again with the same journal never creates an export
    twice. ``policy`` polls exports, ``eval_policy`` evaluations (default: ``policy``).
    ``limiter`` (e.g. a fleet limiter) is the rate limit every request books a slot with
    (default: one made from ``qps``; giving both is an error).
    """
    api = api or client.api
    if api not in ("v1", "v2"):
        raise ConfigurationError(f"api {api!r} is not one of 'v1', 'v2'")
    ids = [validate_export_id(eval_id) for eval_id in eval_ids]
    if len(set(map(json.dumps, ids))) != len(ids):
        raise ConfigurationError("an evaluation id is given twice; give each once")
    make_args = create_args_for(api, content, storage, bucket)
    for eval_id in ids:
        make_args(eval_id)  # a V1 id given to V2 is refused now, by name
    if limiter is not None and qps is not None:
        raise ConfigurationError(
            f"give qps ({qps!r}) or a limiter ({type(limiter).__name__}), not both"
        )
    if limiter is None:
        limiter = AdaptiveRateLimiter() if qps is None else CappedRateLimiter(qps)
    opened = isinstance(journal, (str, os.PathLike))
    book = Journal(journal) if isinstance(journal, (str, os.PathLike)) else journal
    evals_client = _EvalStatusClient(client, api, partly_done_is_done)
    try:
        async with (
            ExportWaiter(evals_client, policy=eval_policy or policy, limiter=limiter,
                         max_in_flight=max_in_flight) as evals,
            ExportWaiter(client, policy=policy, limiter=limiter, api=api,
                         max_in_flight=max_in_flight) as exports,
        ):  # fmt: skip
            job = _Job(client, api, evals, exports, make_args, book, downloader)
            return list(await asyncio.gather(*(job.run_one(eval_id) for eval_id in ids)))
    finally:
        if opened and book is not None:
            with contextlib.suppress(OSError):
                book.close()
