"""The project's simulator served from a separate process, with a small control surface.

Parent side: ``async with SimProcess(qps=20) as sim:`` starts ``python -m
benchmarks.simserver`` on a free port of 127.0.0.1, and kills it on every way out
(including the parent dying: the child watches its parent's pid). Child side: the
library's ``Simulator`` app plus a few benchmark-only routes, so each measured run can add
its own exports right before it starts and read their true finish times afterwards:

* ``POST /_bench/add`` ``{"n", "max_seconds", "fail_ratio", "seed", "held"}``
  -> ``{"first", "last"}``: exports with seeded finish times spread over
  ``[0, max_seconds]`` from now (``held``: never finish on their own).
* ``GET /_bench/finish?first=&last=`` -> ``{"finish_at": [...], "final_state": [...]}``:
  the simulator's ``time.monotonic()`` at which each became terminal (system-wide clock,
  so comparable with the waiter's).
* ``POST /_bench/complete`` ``{"first", "last"}``: make those exports Done now.
* ``POST /_bench/reset`` : zero the counters (``Simulator.reset_stats``).
* ``GET /_bench/answers?first=&last=`` -> ``{"first_answered_at": [...]}``: when each
  export was first answered since the last reset.
* ``POST /_bench/configure`` ``{"qps", "qps_window", "faults", "file_sizes"}``:
  ``Simulator.configure`` (``faults``: a combined rate, or rates by kind).

``log_requests=True`` keeps the simulator's request log (``stats(requests=True)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from qianfan_export_wait.simulator import SIMULATOR_CREDENTIALS

__all__ = ["REPO_ROOT", "SimProcess"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_READY_PREFIX = "BENCH-SIM-READY "


class SimProcess:
    """A simulator child process; the async context manager yields it with ``base_url`` set."""

    def __init__(
        self,
        *,
        qps: float | None = None,
        qps_window: str = "sliding",
        faults: float = 0.0,
        slow_delay: float = 2.0,
        seed: int = 0,
        cpus: set[int] | None = None,
        file_sizes: tuple[int, int] = (4 * 1024, 40 * 1024 * 1024),
        log_requests: bool = False,
    ) -> None:
        self.cpus = cpus
        self.config = {
            "file_sizes": list(file_sizes),
            "log_requests": log_requests,
            "qps": qps,
            "qps_window": qps_window,
            "faults": faults,
            "slow_delay": slow_delay,
            "seed": seed,
        }
        self.base_url = ""
        self.pid = 0
        self._process: subprocess.Popen[str] | None = None
        self._session: aiohttp.ClientSession | None = None

    def _spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.simserver", json.dumps(self.config)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def __aenter__(self) -> SimProcess:
        self._process = self._spawn()
        self.pid = self._process.pid
        try:
            assert self._process.stdout is not None
            line = await asyncio.wait_for(
                asyncio.to_thread(self._process.stdout.readline), timeout=30
            )
            if not line.startswith(_READY_PREFIX):
                raise RuntimeError(f"simulator child did not start (said {line!r})")
            self.base_url = line[len(_READY_PREFIX) :].strip()
            if self.cpus is not None:
                os.sched_setaffinity(self.pid, self.cpus)
            self._session = aiohttp.ClientSession()
        except BaseException:
            self._kill()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._kill()

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._process = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, self.base_url + path, **kwargs) as response:
            response.raise_for_status()
            return await response.json()

    async def add(
        self,
        n: int,
        *,
        max_seconds: float = 8.0,
        fail_ratio: float = 0.1,
        seed: int = 0,
        held: bool = False,
    ) -> list[int]:
        """Add ``n`` exports; return their int ids."""
        spec = {
            "n": n,
            "max_seconds": max_seconds,
            "fail_ratio": fail_ratio,
            "seed": seed,
            "held": held,
        }
        answer = await self._call("POST", "/_bench/add", json=spec)
        return list(range(answer["first"], answer["last"] + 1))

    async def finish_times(self, ids: list[int]) -> dict[int, tuple[float | None, str]]:
        """Export id -> (monotonic time it became terminal or None, final state)."""
        answer = await self._call(
            "GET", "/_bench/finish", params={"first": min(ids), "last": max(ids)}
        )
        first = answer["first"]
        wanted = set(ids)
        return {
            first + offset: (finish_at, state)
            for offset, (finish_at, state) in enumerate(
                zip(answer["finish_at"], answer["final_state"], strict=True)
            )
            if first + offset in wanted
        }

    async def configure(self, **changes: Any) -> None:
        """``Simulator.configure`` in the child."""
        await self._call("POST", "/_bench/configure", json=changes)

    async def complete(self, ids: list[int]) -> None:
        """Make exports ``min(ids)..max(ids)`` Done now."""
        await self._call("POST", "/_bench/complete", json={"first": min(ids), "last": max(ids)})

    async def reset(self) -> None:
        """Zero the simulator's counters."""
        await self._call("POST", "/_bench/reset")

    async def first_answers(self, ids: list[int]) -> dict[int, float | None]:
        """Export id -> the monotonic time it was first answered since the last reset."""
        answer = await self._call(
            "GET", "/_bench/answers", params={"first": min(ids), "last": max(ids)}
        )
        first = answer["first"]
        wanted = set(ids)
        return {
            first + offset: when
            for offset, when in enumerate(answer["first_answered_at"])
            if first + offset in wanted
        }

    async def stats(self, *, requests: bool = False) -> dict[str, Any]:
        """``GET /_sim/stats`` (``requests``: with the request log)."""
        params = {"requests": "1"} if requests else {}
        result: dict[str, Any] = await self._call("GET", "/_sim/stats", params=params)
        return result


# ------------------------------------------------------------------------ child side


def _build_app(config: dict[str, Any]) -> Any:
    from aiohttp import web

    from qianfan_export_wait.simulator import FaultRates, Simulator, SimulatorConfig

    simulator = Simulator(
        SIMULATOR_CREDENTIALS,
        SimulatorConfig(
            seed=config["seed"],
            qps=config["qps"],
            qps_window=config["qps_window"],
            faults=FaultRates.even(config["faults"]),
            slow_delay=config["slow_delay"],
            file_sizes=tuple(config["file_sizes"]),
        ),
    )

    async def add(request: web.Request) -> web.Response:
        spec = await request.json()
        rng = random.Random(spec["seed"])
        n = int(spec["n"])
        failing = set(rng.sample(range(n), round(n * spec["fail_ratio"])))
        first = last = 0
        for index in range(n):
            if spec["held"]:
                export = simulator.add_export(finish_after=None)
            else:
                finish_after = rng.uniform(0.0, spec["max_seconds"])
                export = simulator.add_export(
                    finish_after=finish_after,
                    fail=index in failing,
                    uploading_after=finish_after * rng.uniform(0.1, 0.6),
                )
            first = first or export.export_id
            last = export.export_id
        return web.json_response({"first": first, "last": last})

    async def finish(request: web.Request) -> web.Response:
        first, last = int(request.query["first"]), int(request.query["last"])
        exports = simulator.exports
        records = [exports[export_id] for export_id in range(first, last + 1)]
        return web.json_response(
            {
                "first": first,
                "finish_at": [export.finished_at for export in records],
                "final_state": [export.final_state for export in records],
                "now": time.monotonic(),
            }
        )

    async def configure(request: web.Request) -> web.Response:
        changes = await request.json()
        if isinstance(changes.get("faults"), dict):
            changes["faults"] = FaultRates(**changes["faults"])
        if "file_sizes" in changes:
            changes["file_sizes"] = tuple(changes["file_sizes"])
        simulator.configure(**changes)
        return web.json_response({"ok": True})

    async def complete(request: web.Request) -> web.Response:
        spec = await request.json()
        for export_id in range(int(spec["first"]), int(spec["last"]) + 1):
            simulator.complete(export_id)
        return web.json_response({"ok": True})

    async def reset(request: web.Request) -> web.Response:
        simulator.reset_stats()
        return web.json_response({"ok": True})

    async def answers(request: web.Request) -> web.Response:
        first, last = int(request.query["first"]), int(request.query["last"])
        exports = simulator.exports
        return web.json_response(
            {
                "first": first,
                "first_answered_at": [
                    exports[export_id].first_answered_at for export_id in range(first, last + 1)
                ],
            }
        )

    simulator.app.router.add_post("/_bench/complete", complete)
    simulator.app.router.add_post("/_bench/reset", reset)
    simulator.app.router.add_get("/_bench/answers", answers)
    if config.get("log_requests"):
        simulator.stats.keep_request_log()
    simulator.app.router.add_post("/_bench/add", add)
    simulator.app.router.add_get("/_bench/finish", finish)
    simulator.app.router.add_post("/_bench/configure", configure)
    return simulator


async def _serve(config: dict[str, Any]) -> None:
    simulator = _build_app(config)
    parent = os.getppid()
    async with simulator.serve("127.0.0.1", 0) as base_url:
        print(_READY_PREFIX + base_url, flush=True)
        # No event says "the parent died"; an orphan notices by its new parent pid.
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(0.5)


def main() -> None:
    """Child entry point: serve until terminated or orphaned."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(_serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
