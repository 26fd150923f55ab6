"""The runs behind the verbs: ``run_wait`` (wait for many exports, optionally fetch their
files) and ``run_status`` (ask once for each). Both give every requested id exactly one
line, interrupted or not, and return a ``Tally`` whose ``exit_code()`` ends the command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..client import ExportStatusClient
from ..downloads import Downloader, DownloadProgress, ProgressHook
from ..errors import ApiError, AuthError, QianfanError, TlsError
from ..models import ExportId, ExportStatus
from ..waiting.outcomes import ExportOutcome, OutcomeKind, kind_for_state
from ..waiting.waiter import ExportWaiter
from .downloads import DownloadStage
from .exits import ExitCode
from .inputs import EarlierRun
from .printer import Printer, printer_for
from .progress import ProgressSnapshot, summary_line
from .records import json_line, outcome_record, record_for
from .signals import Interrupt
from .tally import Tally
from .terminal import Console

__all__ = ["OUTPUT_GRACE", "DownloaderFactory", "WaitPlan", "run_status", "run_wait"]

logger = logging.getLogger("qianfan_export_wait")

OUTPUT_GRACE = 2.3
"""Seconds after SIGINT/SIGTERM allowed for printing what is known (a few hundred
thousand pending lines, when stdout keeps up), so that the command ends within 3 s even
when nobody reads stdout."""

OUTPUT_STALL = 1.0
"""After a signal, seconds stdout may take no line at all before the run stops waiting
for it (a reader that stopped reading)."""

_REFRESH_SECONDS = 0.2

_DEADLINE_EVERY = 1024
"""After a signal, lines made between two looks at the grace's deadline."""


@dataclass(frozen=True)
class WaitPlan:
    """What ``run_wait`` waits for and how it reports: the ids (each once, in the order
    their lines go out with ``order="input"``), the ``order`` (``"input"`` or
    ``"completion"``), and an ``earlier`` run whose final records are taken as they are."""

    ids: Sequence[ExportId]
    order: str = "input"
    earlier: EarlierRun | None = None


class _Run:
    """The state one ``run_wait``/``run_status`` call shares between its steps."""

    def __init__(
        self, console: Console, interrupt: Interrupt, printer: Callable[[], Printer], total: int
    ) -> None:
        self.console = console
        self.interrupt = interrupt
        # Made when the first line comes: for a million ids in input order it takes a
        # while, and the first requests need not wait for it.
        self._make_printer = printer
        self._printer: Printer | None = None
        self.tally = Tally(total=total)
        self.started = time.monotonic()

    @property
    def printer(self) -> Printer:
        if self._printer is None:
            self._printer = self._make_printer()
        return self._printer

    def emit(self, export_id: ExportId, record: dict[str, Any]) -> None:
        for line in self.printer.add(export_id, json_line(record)):
            self.console.lines.write(line)

    def emit_later(self, export_id: ExportId) -> None:
        """As ``emit``, for a line the printer makes when it is written."""
        for line in self.printer.add_later(export_id):
            self.console.lines.write(line)

    async def keep_up(self) -> None:
        """Wait while stdout lags far behind (only when it does)."""
        lines = self.console.lines
        if lines.backlog >= lines.high_water:
            await lines.room()

    def start_output(self) -> None:
        def failed(error: OSError) -> None:
            if isinstance(error, BrokenPipeError):
                self.interrupt.trigger(ExitCode.SIGPIPE)
            else:
                self.console.say(f"qianfan-export-wait: cannot write to stdout: {error}")
                self.interrupt.trigger(ExitCode.IOERR)

        self.console.lines.start(on_failure=failed)

    async def finish(self, pending: Iterable[tuple[ExportId, dict[str, Any]]]) -> None:
        """Print every line still held, with ``pending``'s, then wait for stdout: without
        end on a normal finish; after a signal, until the grace period ends or stdout has
        taken nothing for ``OUTPUT_STALL`` seconds."""
        lines = self.console.lines
        interrupt = self.interrupt
        if interrupt.code is not None and not interrupt.by_signal:
            lines.close()
            return  # stdout is gone: nothing more can be printed
        deadline = stall = None
        if interrupt.at is not None:
            deadline, stall = interrupt.at + OUTPUT_GRACE, OUTPUT_STALL
        rendered = ((export_id, json_line(record)) for export_id, record in pending)
        try:
            written = True
            for count, line in enumerate(self.printer.remaining(rendered), 1):
                lines.write(line)
                if lines.backlog >= lines.high_water and not await lines.room(
                    deadline=deadline, stall=stall
                ):
                    written = False
                    break
                if deadline is not None and count % _DEADLINE_EVERY == 0:
                    # A stdout that keeps up must not stretch the grace either: making
                    # a million lines takes longer than the grace allows.
                    if time.monotonic() >= deadline:
                        written = False
                        break
                    await asyncio.sleep(0)
            written = written and await lines.drain(deadline=deadline, stall=stall)
        except asyncio.CancelledError:
            if interrupt.code is None:
                raise
            interrupt.acknowledge()  # interrupted while printing: stop printing
            written = False
        lines.close()
        if not written and lines.error is None:
            self.console.say(
                "qianfan-export-wait: stdout did not take every line in time; "
                f"{self.tally.total - lines.written} of {self.tally.total} lines were not "
                "written"
            )

    def end(self, snapshot: ProgressSnapshot) -> None:
        """Take the bar down and print the summary (and why the run stopped early)."""
        console = self.console
        console.display.close()
        code = self.interrupt.code
        if code is ExitCode.SIGPIPE:
            return  # as Unix tools do: a closed pipe ends the run quietly
        reason = None
        if code is not None and self.interrupt.by_signal:
            reason = f"interrupted by {code.name}"
            console.say(f"qianfan-export-wait: {reason}")
        if console.summary:
            console.say(f"qianfan-export-wait: {summary_line(snapshot, interrupted=reason)}")


DownloaderFactory = Callable[[ProgressHook], Downloader]
"""Makes the ``Downloader`` of a run, given the hook that counts its bytes."""


async def run_wait(
    waiter: ExportWaiter,
    plan: WaitPlan,
    console: Console,
    interrupt: Interrupt,
    *,
    downloader: DownloaderFactory | None = None,
) -> Tally:
    """Wait for ``plan.ids`` through ``waiter``, printing each export's line on
    ``console``; with a ``downloader`` factory, fetch each Done export's file while the
    waiting goes on, and print its line when the file is in place (or has failed).

    On SIGINT/SIGTERM (through ``interrupt``) polling stops at once and every id
    without a line gets a ``pending`` one with its last known state.
    """
    render = _earlier_line(plan)
    run = _Run(console, interrupt, lambda: printer_for(plan.order, plan.ids, render), len(plan.ids))
    async with contextlib.AsyncExitStack() as resources:
        stage: DownloadStage | None = None
        if downloader is not None:
            fetcher = await resources.enter_async_context(downloader(_byte_counter(run.tally)))
            stage = DownloadStage(
                fetcher, _download_reporter(run), queued=2 * fetcher.max_concurrency
            )
        await _wait(run, waiter, plan, stage)
    run.end(_snapshot(run, waiter, downloading=downloader is not None))
    return run.tally


async def _wait(
    run: _Run, waiter: ExportWaiter, plan: WaitPlan, stage: DownloadStage | None
) -> None:
    tally = run.tally
    interrupt = run.interrupt
    run.start_output()
    refresher = asyncio.ensure_future(
        _refresh(run.console, lambda: _snapshot(run, waiter, downloading=stage is not None))
    )
    resumed = _Resumed()
    stream = None
    try:
        try:
            to_wait = await _take_earlier(run, plan, resumed)
            stream = waiter.as_completed(to_wait)
            async with stream:
                async for outcome in stream:
                    tally.count_outcome(outcome)
                    if stage is not None and outcome.kind is OutcomeKind.DONE:
                        await stage.submit(outcome)
                    else:
                        run.emit(outcome.export_id, record_for(outcome))
                    await run.keep_up()
                if stage is not None:
                    await stage.join()
        except asyncio.CancelledError:
            if interrupt.code is None:
                raise
            interrupt.acknowledge()
        pending: Iterable[ExportOutcome] = ()
        if interrupt.code is not None:
            if stage is not None:
                await stage.cancel()  # each download still going reports itself
            if interrupt.by_signal and stream is not None:
                pending = _counted(tally, stream.iter_unfinished())  # one at a time
        if stream is None:  # interrupted while printing the earlier run's records
            unprinted = resumed.unprinted(run, plan) if interrupt.by_signal else iter(())
            await run.finish(unprinted)
        else:
            await run.finish((outcome.export_id, record_for(outcome)) for outcome in pending)
        if interrupt.by_signal:
            tally.pending = tally.total - tally.finished  # lines cut short included
    finally:
        refresher.cancel()
        _close_earlier(plan)
    tally.stopped = interrupt.code


def _counted(tally: Tally, outcomes: Iterable[ExportOutcome]) -> Iterator[ExportOutcome]:
    """``outcomes``, each counted as it goes by (some may be final: known, not yet read)."""
    for outcome in outcomes:
        if outcome.kind is not OutcomeKind.PENDING:
            tally.count_outcome(outcome)
        yield outcome


class _Resumed:
    """How far the earlier run's records have been printed: the ids before ``next`` in
    the plan have their line, or are in ``to_wait``."""

    def __init__(self) -> None:
        self.to_wait: list[ExportId] = []
        self.next = 0

    def unprinted(self, run: _Run, plan: WaitPlan) -> Iterator[tuple[ExportId, dict[str, Any]]]:
        """After an interrupt while printing them: every id without a line, in the plan's
        order, with its earlier final record or a ``pending`` one."""
        final = plan.earlier.final if plan.earlier is not None else {}
        for export_id in self.to_wait:
            yield export_id, outcome_record(export_id, "pending", None, None, 0, 0.0)
        for export_id in plan.ids[self.next :]:
            record = final.get(export_id)
            if record is None:
                record = outcome_record(export_id, "pending", None, None, 0, 0.0)
            else:
                run.tally.resumed += 1
                run.tally.count(OutcomeKind(record["outcome"]))
            yield export_id, record


async def _take_earlier(run: _Run, plan: WaitPlan, resumed: _Resumed) -> Sequence[ExportId]:
    """Print the earlier run's final records, as fast as stdout takes them (they are read
    from the earlier file one at a time); return the ids still to wait for."""
    if plan.earlier is None or not plan.earlier.final:
        resumed.next = len(plan.ids)
        return plan.ids
    final = plan.earlier.final
    opener = getattr(final, "open", None)
    if opener is not None:
        opener()
    tally = run.tally
    for index, export_id in enumerate(plan.ids):
        resumed.next = index
        record = final.get(export_id)
        if record is None:
            resumed.to_wait.append(export_id)
            continue
        tally.resumed += 1
        tally.count(OutcomeKind(record["outcome"]))
        if isinstance(record.get("file"), dict):
            tally.files += 1
        run.emit_later(export_id)  # read again when printed: the printer may hold it
        resumed.next = index + 1
        await run.keep_up()
    resumed.next = len(plan.ids)
    return resumed.to_wait


def _earlier_line(plan: WaitPlan) -> Callable[[ExportId], str]:
    """The line of an earlier run's final record, read again from its file."""
    final = plan.earlier.final if plan.earlier is not None else {}

    def render(export_id: ExportId) -> str:
        record = final.get(export_id)
        if record is None:  # the file changed while this run printed it
            logger.warning("--resume: the record of export %r changed while printing", export_id)
            record = outcome_record(export_id, "pending", None, None, 0, 0.0)
        return json_line(record)

    return render


def _close_earlier(plan: WaitPlan) -> None:
    close = getattr(plan.earlier.final, "close", None) if plan.earlier is not None else None
    if close is not None:
        close()


def _byte_counter(tally: Tally) -> ProgressHook:
    def count(progress: DownloadProgress) -> None:
        tally.bytes_received += progress.received

    return count


def _download_reporter(run: _Run) -> Callable[[ExportOutcome, dict[str, Any]], None]:
    def report(outcome: ExportOutcome, extra: dict[str, Any]) -> None:
        if "file" in extra:
            run.tally.files += 1
        else:
            run.tally.downloads_failed += 1
        run.emit(outcome.export_id, {**record_for(outcome), **extra})

    return report


def _snapshot(run: _Run, waiter: ExportWaiter, *, downloading: bool) -> ProgressSnapshot:
    elapsed = time.monotonic() - run.started
    return run.tally.snapshot(waiter.stats, elapsed, downloading=downloading)


async def _refresh(console: Console, snapshot: Callable[[], ProgressSnapshot]) -> None:
    display = console.display
    while display.active:
        display.update(snapshot())
        await asyncio.sleep(_REFRESH_SECONDS)


async def run_status(
    client: ExportStatusClient, ids: Sequence[ExportId], console: Console, interrupt: Interrupt
) -> Tally:
    """Ask once for the status of each id, in order, printing a line for each.

    After an authentication failure no more requests are sent: the other ids get an
    ``error`` line carrying the same failure. Interrupted, the ids not yet asked get a
    ``pending`` line.
    """
    run = _Run(console, interrupt, lambda: printer_for("completion", ids), len(ids))
    tally = run.tally
    run.start_output()
    asked = 0
    auth_error: AuthError | None = None
    try:
        for export_id in ids:
            started = time.monotonic()
            requests_before = client.stats.requests
            status: ExportStatus | None = None
            error: QianfanError | None = auth_error
            if auth_error is None:
                try:
                    status = await client.get_status(export_id)
                except AuthError as exc:
                    _log_auth_failure(client, exc)
                    error = auth_error = exc
                except ApiError as exc:
                    error = exc
            kind = OutcomeKind.ERROR if status is None else kind_for_state(status.state)
            tally.count(kind)
            tally.auth_failed = auth_error is not None
            run.emit(
                export_id,
                outcome_record(
                    export_id,
                    kind.value,
                    status,
                    error,
                    client.stats.requests - requests_before,
                    time.monotonic() - started,
                ),
            )
            asked += 1
            await run.keep_up()
    except asyncio.CancelledError:
        if interrupt.code is None:
            raise
        interrupt.acknowledge()
    pending: list[tuple[ExportId, dict[str, Any]]] = []
    if interrupt.code is not None:
        tally.stopped = interrupt.code
        pending = [
            (export_id, outcome_record(export_id, "pending", None, None, 0, 0.0))
            for export_id in ids[asked:]
        ]
        tally.pending = len(pending)
    await run.finish(pending)
    tally.stopped = interrupt.code
    console.display.close()
    if interrupt.code is not None and interrupt.by_signal:
        console.say(f"qianfan-export-wait: interrupted by {interrupt.code.name}")
    return tally


def _log_auth_failure(client: ExportStatusClient, error: AuthError) -> None:
    what = "TLS" if isinstance(error, TlsError) else "authentication"
    logger.error(
        "%s failed for access key %s at %s: %s",
        what,
        client.credentials.masked_access_key,
        client.base_url,
        error,
    )
