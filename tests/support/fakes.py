"""The one fake of each in-process seam: the status client the waiter calls
(``ScriptedClient``), the downloader beside it (``FakeDownloader``) and a monotonic clock
moved by hand (``FakeClock``). Their configurations live beside the tests that need them
(the model's ``FakeApi`` answers from timelines: ``model_support``). See README.md."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from statuses import make_status

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import ClientStats
from qianfan_export_wait.errors import DownloadError
from qianfan_export_wait.models import ExportStatus

__all__ = ["Answer", "FakeClock", "FakeDownloader", "Request", "ScriptedClient"]

Answer = Any  # a state name, an exception instance, or a callable returning either


class FakeClock:
    """A monotonic clock (a callable, as the simulator and the client take it) that moves
    only when told to: set ``now`` or call ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on."""
        self.now += seconds


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass
class Request:
    """One request the fake status client received, and what became of it."""

    seq: int
    export_id: Any  # int or str
    sent: float
    ended: float = math.inf  # answered, failed or cancelled
    state: str | None = None  # the state answered, if a status was answered
    status: ExportStatus | None = None
    fault: str | None = None  # "throttle", "throttle-retry-after", "transient", "outage"
    retry_after: float | None = None
    cancelled: bool = False
    rate: float = math.inf  # the waiter's limiter rate when the request came in


class ScriptedClient:
    """The fake status client: answers each export id from ``script`` (the last answer
    repeats forever; a callable is called, an exception raised), logs every request as a
    ``Request`` on the waiter's clock, counts requests in flight, and with ``gate`` set
    holds every request after the first until the gate opens. A subclass answers
    otherwise by overriding ``answer`` (and ``arrived``/``leaving`` to watch the flow)."""

    def __init__(self, clock: Clock, script: dict[Any, list[Answer]] | None = None) -> None:
        self.clock = clock
        self.script: dict[Any, list[Answer]] = {} if script is None else script
        self.requests: list[Request] = []
        self.stats = ClientStats()
        self.credentials = Credentials("AKIDtest", "not-the-real-secret")
        self.base_url = "http://127.0.0.1:1"
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gate: asyncio.Event | None = None  # holds every request after the first

    def now(self) -> float:
        """The time requests are logged at."""
        return self.clock.now()

    @property
    def calls(self) -> list[tuple[float, Any]]:
        """``(sent, export_id)`` of every request, in order."""
        return [(request.sent, request.export_id) for request in self.requests]

    def times_for(self, export_id: int | str) -> list[float]:
        """When ``export_id`` was asked for."""
        return [r.sent for r in self.requests if r.export_id == export_id]

    async def fetch_once(self, export_id: Any) -> ExportStatus:
        """One status request, as the waiter makes it."""
        request = Request(len(self.requests), export_id, self.now())
        self.requests.append(request)
        self.stats.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.arrived(request)
        try:
            if self.gate is not None and len(self.requests) > 1:
                await self.gate.wait()  # the first request proves the credentials
            return await self.answer(request)
        except asyncio.CancelledError:
            request.cancelled = True
            request.ended = self.now()
            raise
        finally:
            self.leaving(request)
            self.in_flight -= 1

    def arrived(self, request: Request) -> None:
        """Called as ``request`` comes in (already counted in flight)."""

    def leaving(self, request: Request) -> None:
        """Called as ``request`` ends (still counted in flight)."""

    async def answer(self, request: Request) -> ExportStatus:
        """The scripted answer to ``request`` (a status, or the scripted error raised)."""
        answers = self.script[request.export_id]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer):
            answer = answer()
        request.ended = self.now()
        if isinstance(answer, BaseException):
            request.fault = type(answer).__name__
            raise answer
        request.state = answer
        request.status = make_status(request.export_id, answer)
        return request.status


@dataclass
class FakeDownloader:
    """The fake downloader: each download waits for ``gate`` (if any), then ``delay``
    seconds of the loop's time, then fetches the "file" (or fails when ``fail``); counts
    downloads started, active and cancelled, and sets ``changed`` when one starts."""

    delay: float = 0.0
    fail: bool = False
    gate: asyncio.Event | None = None
    active: int = 0
    started: int = 0
    cancelled: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_started(self, count: int) -> None:
        """Wait until ``count`` downloads have started."""
        while self.started < count:
            self.changed.clear()
            await self.changed.wait()

    async def download(self, status: ExportStatus, **_: Any) -> Any:
        """Fetch ``status``'s "file": a record naming the export."""
        self.active += 1
        self.started += 1
        self.changed.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                raise DownloadError("the fake file was refused", export_id=status.export_id)
            return {"export_id": status.export_id, "fetched": True}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
