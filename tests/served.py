"""``mock-runbase serve`` as a real process on a free loopback port, for tests that need one.

The process writes its log to a file, never to a pipe nobody reads: serve prints a line per
request, and a full pipe (64 KiB) would block the server mid-answer after a few hundred requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["Server", "free_port", "serve_command"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command() -> list[str]:
    script = shutil.which("mock-runbase", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "mock_runbase"]


class Server:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [*serve_command(), "serve", "--port", str(self.port), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.started = time.monotonic()
        try:
            self.healthy_after = self.wait_healthy()
        except BaseException:
            self.process.kill()  # never leave a server behind (a failed start under load)
            self.process.wait(timeout=10)
            self.log.close()
            raise

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_healthy(self, timeout: float = 60) -> float:  # generous: CI machines are busy
        while time.monotonic() - self.started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                time.sleep(0.02)  # waiting for a process to bind its port, not for mock time
        raise TimeoutError("server did not become healthy")

    def advance(self, seconds: float) -> None:
        response = httpx.post(f"{self.base}/_mock/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text

    def stop(self, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        """SIGINT, as Ctrl-C does (or ``how``); the exit code and everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(how)
            self.process.wait(timeout=10)
        output = self.output()
        self.log.close()
        return self.process.returncode, output
