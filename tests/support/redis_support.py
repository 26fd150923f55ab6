"""A real ``redis-server`` for the fleet limiter's tests: a subprocess on a free port of
127.0.0.1 with persistence off, which a test can restart, stop, pause and flush."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

__all__ = ["RedisServer", "require_redis_server"]


def require_redis_server() -> str:
    """The ``redis-server`` binary; skip the test without it, fail it under CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = (
            "redis-server is not on PATH: the fleet limiter's tests need a real one "
            "(Debian: apt-get install -y redis-server; .ci/run installs it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RedisServer:
    """One ``redis-server`` process; ``url`` stays the same across restarts. With a
    ``password`` it requires one (``requirepass``); ``url`` holds none."""

    def __init__(
        self, binary: str, *, password: str | None = None, data_dir: str | None = None
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        """With a folder: the append-only file on, fsync'ed at every write, so a kill
        loses nothing (the durable queue's tests of a restart with persistence)."""
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again) on the same port; return once it answers PING."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(
                    ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.data_dir]
                    if self.data_dir
                    else ["--appendonly", "no"]
                ),
                "--daemonize",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        """Kill it (its memory goes with it: persistence is off)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start: every key and loaded script is gone."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def command(self, *words: str) -> bytes:
        """One command over a raw socket (no client library): its first reply line."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(request.encode())
            return conn.recv(65536)
