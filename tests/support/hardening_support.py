"""Helpers shared by ``test_cli.py``, ``test_client.py``, ``test_simulator.py`` and the
``test_hardening_*`` files: the command line as a subprocess
with a controlled environment, and a raw TCP server that answers with any bytes at all
(the recording HTTP server is ``scripted_server.recording_server``). Everything listens
on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

CLI = (sys.executable, "-m", "qianfan_export_wait")
SECRET_KEY = "SK-do-not-leak-9f27c1d0e4b8"
ACCESS_KEY = "AKhardeningFULLaccessKEY0123456789"
# Warnings PYTHONDEVMODE turns on that would mean a leak on shutdown.
SHUTDOWN_WARNINGS = (
    "Unclosed client session",
    "Unclosed connector",
    "Task was destroyed",
    "never awaited",
    "ResourceWarning",
)


def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def cli_env(
    access_key: str | None = ACCESS_KEY, secret_key: str | None = SECRET_KEY, **extra: str
) -> dict[str, str]:
    """A minimal environment for the CLI: no inherited Qianfan settings, no proxies."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "SYSTEMROOT", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = "*"
    if access_key is not None:
        env["QIANFAN_ACCESS_KEY"] = access_key
    if secret_key is not None:
        env["QIANFAN_SECRET_KEY"] = secret_key
    env.update(extra)
    return env


@dataclass
class CliRun:
    """What one CLI process did."""

    code: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[dict[str, Any]]:
        """stdout parsed as JSON Lines (fails the test if any line is not JSON)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 30.0,
) -> CliRun:
    """Run ``python -m qianfan_export_wait *args`` without blocking the event loop (so an
    in-process simulator keeps answering)."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(cli_env() if env is None else env),
    )
    try:
        out, err = await asyncio.wait_for(
            process.communicate(None if stdin is None else stdin.encode("utf-8")), timeout
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliRun(process.returncode, out.decode("utf-8"), err.decode("utf-8"))


# --- servers ------------------------------------------------------------------------------

RawResponder = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


def http_response(
    body: bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_length: bool = True,
) -> bytes:
    """A complete HTTP/1.1 response as bytes (``content_length=False``: close-delimited)."""
    lines = [f"HTTP/1.1 {status} Whatever", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RawServer:
    """A TCP server on 127.0.0.1 that reads one HTTP request per connection and hands
    the request body to ``respond``, which may write anything (or nothing, ever)."""

    respond: RawResponder
    port: int = 0
    requests: int = 0
    bytes_sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests += 1
                await self.respond(body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self.tasks.discard(task)
            writer.close()
            with suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def stream(self, writer: asyncio.StreamWriter, chunk: bytes, total: float) -> None:
        """Write ``chunk`` repeatedly up to ``total`` bytes (``inf``: forever), counting
        what went out, until done or the client hangs up."""
        sent = 0
        with suppress(ConnectionError):
            while sent < total:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self.bytes_sent += len(chunk)


@asynccontextmanager
async def raw_server(respond: RawResponder) -> AsyncIterator[RawServer]:
    """Serve ``respond`` on 127.0.0.1 for the duration of the block."""
    raw = RawServer(respond)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        server.close()
        for task in list(raw.tasks):
            task.cancel()
        await asyncio.gather(*raw.tasks, return_exceptions=True)
        await server.wait_closed()
