"""The synchronous API, for scripts and notebooks: ``wait``, ``wait_all`` and ``status``.

::

    from qianfan_export_wait import sync

    report = sync.wait_all([96, 97, 98])          # a progress bar while it waits
    status = sync.wait(96, timeout=600)           # the Done status, or an exception
    print(sync.status(96).state_name)             # one request, no waiting

Each call makes its own client (credentials from ``QIANFAN_ACCESS_KEY`` and
``QIANFAN_SECRET_KEY`` unless ``credentials`` is given; ``base_url`` and the other
``ExportStatusClient`` options as keywords) and its own waiter, and closes both before it
returns. In a plain script it runs an event loop of its own; inside a running one
(Jupyter, IPython, an ``async def``) it runs in a thread of its own, and the calling
thread blocks until it is done. Ctrl-C cancels the wait (every request stops, the client
is closed) and raises ``KeyboardInterrupt``.

Progress goes to a ``tqdm`` bar when ``tqdm`` is installed (the ``notebook`` extra: a
widget in Jupyter), else to a line on stderr; by default only when stderr is a terminal
or the code runs in a notebook kernel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from .auth import Credentials
from .client import ExportStatusClient
from .models import ExportId, ExportStatus
from .waiting.outcomes import ExportOutcome, OutcomeKind, UpdateHook, WaitReport
from .waiting.policy import POLICY_TIMEOUT, PollPolicy, UsePolicyTimeout
from .waiting.waiter import ExportWaiter

if TYPE_CHECKING:
    from .job import ExportJobResult

__all__ = ["run", "run_export_job", "status", "wait", "wait_all"]

_T = TypeVar("_T")

Timeout = float | UsePolicyTimeout | None


def run(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine ``make()`` to its end from synchronous code, in or out of a
    running event loop (then in a thread of its own); Ctrl-C cancels it and raises
    ``KeyboardInterrupt``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if not running:  # (outside the except: an error of make() chains to nothing)
        return asyncio.run(make())  # its SIGINT handling cancels the task, then raises
    return _run_in_thread(make)


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    outcome: concurrent.futures.Future[_T] = concurrent.futures.Future()
    started = threading.Event()
    handles: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(make())
            handles["loop"], handles["task"] = loop, task
            started.set()
            try:
                outcome.set_result(loop.run_until_complete(task))
            except BaseException as error:
                outcome.set_exception(error)
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException as error:  # make() itself raised: the caller gets it
            if not outcome.done():
                outcome.set_exception(error)
        finally:
            started.set()
            loop.close()

    # A running loop in this thread (asyncio.run) turns the first Ctrl-C into a task
    # cancellation that cannot land while this thread blocks here: Ctrl-C must raise.
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=main, name="qianfan-export-wait-sync", daemon=True)
    try:
        thread.start()
        try:
            result = outcome.result()
        except KeyboardInterrupt:
            started.wait()
            loop, task = handles.get("loop"), handles.get("task")
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # it ended meanwhile
                    loop.call_soon_threadsafe(task.cancel)
            thread.join()
            raise
        except BaseException:
            thread.join()
            raise
        thread.join()  # its loop is closed: nothing of the call is left running
        return result
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


@contextlib.asynccontextmanager
async def _client(
    credentials: Credentials | None, client_options: dict[str, Any]
) -> AsyncIterator[ExportStatusClient]:
    client = (
        ExportStatusClient.from_env(**client_options)
        if credentials is None
        else ExportStatusClient(credentials, **client_options)
    )
    async with client:
        yield client


def _waiter(
    client: ExportStatusClient,
    policy: PollPolicy | None,
    qps: float | None,
    on_update: UpdateHook | None,
    waiter_options: dict[str, Any],
) -> ExportWaiter:
    return ExportWaiter(client, policy=policy, qps=qps, on_update=on_update, **waiter_options)


def wait(
    export_id: ExportId,
    *,
    timeout: Timeout = POLICY_TIMEOUT,
    credentials: Credentials | None = None,
    policy: PollPolicy | None = None,
    qps: float | None = None,
    on_update: UpdateHook | None = None,
    waiter_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> ExportStatus:
    """Wait for one export; return its ``Done`` status or raise as ``ExportWaiter.wait``
    does (``ExportFailedError``, ``ExportTimeoutError``, the error that ended it)."""

    async def main() -> ExportStatus:
        async with _client(credentials, client_options) as client:
            waiter = _waiter(client, policy, qps, on_update, waiter_options or {})
            async with waiter:
                return await waiter.wait(export_id, timeout=timeout)

    return run(main)


def wait_all(
    ids: Iterable[ExportId],
    *,
    timeout: Timeout = POLICY_TIMEOUT,
    credentials: Credentials | None = None,
    policy: PollPolicy | None = None,
    qps: float | None = None,
    on_update: UpdateHook | None = None,
    progress: bool | None = None,
    waiter_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> WaitReport:
    """Wait until every export has an outcome; return the ``WaitReport`` (in the order
    of ``ids``). ``progress``: show how many are finished (``None``: when stderr is a
    terminal or in a notebook)."""
    unique = list(dict.fromkeys(ids))
    show = _progress_wanted() if progress is None else progress

    async def main() -> WaitReport:
        async with _client(credentials, client_options) as client:
            waiter = _waiter(client, policy, qps, on_update, waiter_options or {})
            async with waiter:
                if not show:
                    return await waiter.wait_all(unique, timeout=timeout)
                started = time.monotonic()
                outcomes: dict[tuple[type, ExportId], ExportOutcome] = {}
                with _progress(len(unique)) as step:
                    async with waiter.as_completed(unique, timeout=timeout) as stream:
                        async for outcome in stream:
                            outcomes[(type(outcome.export_id), outcome.export_id)] = outcome
                            step(outcome)
                return WaitReport(
                    (outcomes[(type(i), i)] for i in unique), elapsed=time.monotonic() - started
                )

    return run(main)


def status(
    export_id: ExportId, *, credentials: Credentials | None = None, **client_options: Any
) -> ExportStatus:
    """The current status of one export (one request, the client's own retries)."""

    async def main() -> ExportStatus:
        async with _client(credentials, client_options) as client:
            return await client.get_status(export_id)

    return run(main)


def run_export_job(
    eval_ids: Iterable[ExportId],
    *,
    credentials: Credentials | None = None,
    download_to: str | os.PathLike[str] | None = None,
    job_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> list[ExportJobResult]:
    """The whole job for each evaluation, from synchronous code: wait for it, create its
    export, wait for that, and with ``download_to`` fetch its file there (verified).
    ``job_options`` go to ``qianfan_export_wait.job.run_export_job`` (``api``,
    ``content``, ``storage``, ``journal``, ...); ``client_options`` to the client."""
    from .downloads.fetch import Downloader
    from .job import run_export_job as run_job

    ids = list(eval_ids)

    async def main() -> list[ExportJobResult]:
        async with _client(credentials, client_options) as client:
            if download_to is None:
                return await run_job(client, ids, **(job_options or {}))
            # No refresh of its own: the job polls fresh links inside its rate limit.
            downloader = Downloader(download_to, credentials=client.credentials)
            async with downloader:
                return await run_job(client, ids, downloader=downloader, **(job_options or {}))

    return run(main)


# -- progress ------------------------------------------------------------------------------


def _isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _progress_wanted() -> bool:
    return _isatty(sys.stderr) or "ipykernel" in sys.modules


@contextlib.contextmanager
def _progress(total: int) -> Any:
    """A step function that counts one outcome; a tqdm bar when tqdm is installed."""
    try:
        tqdm: Any = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        with tqdm(total=total, unit="export", desc="exports", file=sys.stderr) as bar:

            def step(outcome: ExportOutcome) -> None:
                bar.update(1)
                if outcome.kind is not OutcomeKind.DONE:
                    bar.set_postfix_str(f"last: {outcome.export_id} {outcome.kind}")

            yield step
        return
    line = _StderrProgress(total, sys.stderr)
    try:
        yield line.step
    finally:
        line.close()


class _StderrProgress:
    """``done/total`` on stderr: redrawn in place on a terminal, else a line per tenth."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.terminal = _isatty(stream)
        self.counts = dict.fromkeys(OutcomeKind, 0)
        self.seen = 0
        self._next_line = 0

    def _text(self) -> str:
        counts = ", ".join(f"{c} {k}" for k, c in self.counts.items() if c)
        noun = "export" if self.total == 1 else "exports"
        return f"qianfan-export-wait: {self.seen}/{self.total} {noun} finished ({counts})"

    def step(self, outcome: ExportOutcome) -> None:
        self.seen += 1
        self.counts[outcome.kind] += 1
        if self.terminal:
            self.stream.write("\r" + self._text())
            self.stream.flush()
        elif self.seen >= self._next_line or self.seen == self.total:
            self.stream.write(self._text() + "\n")
            self._next_line = self.seen + max(1, self.total // 10)

    def close(self) -> None:
        if self.terminal and self.seen:
            self.stream.write("\n")
            self.stream.flush()
