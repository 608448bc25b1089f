"""The three servers under test, and starting/stopping one on a free loopback port.

Every server runs as one process group of its own, logs to ``bench/.cache/logs`` and is
stopped (SIGTERM, then SIGKILL) when its ``running()`` block ends, whatever happened inside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tools import BENCH_DIR, CACHE_DIR, REPO_DIR, free_port

__all__ = [
    "Server",
    "StartFailed",
    "Target",
    "bare_target",
    "mock_target",
    "prism_target",
    "running",
    "serve_args",
]

LOG_DIR = CACHE_DIR / "logs"
PNG_DIR = CACHE_DIR / "pngs"
BALANCE_USD = "1000000000"  # creates must never run out of money during a benchmark
UVICORN_FLAGS = ["--log-level", "warning"]  # the rest as uvicorn.run's defaults: 1 process


class StartFailed(RuntimeError):
    """The server exited or never became healthy; the message says why (log tail included)."""


@dataclass(frozen=True)
class Target:
    name: str  # "mock", "prism", "bare"
    label: str
    command: list[str]  # "{port}" is replaced by the port
    prefix: str = "/v1"  # where the runs API lives
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0


@dataclass(frozen=True)
class Server:
    target: Target
    pid: int
    port: int
    ready_s: float  # from the process start to the first 200 of GET /healthz

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def mock_command() -> list[str]:
    script = Path(sys.executable).parent / "mock-runbase"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mock_runbase"]


def mock_target(timing: str = "fast", label: str = "mock-runbase") -> Target:
    return Target("mock", label, [*mock_command(), *serve_args(timing)])


def serve_args(timing: str) -> list[str]:
    """``mock-runbase serve`` as benchmarked: loopback, no rate limit, money to spare."""
    return [
        "serve",
        "--timing",
        timing,
        "--no-rate-limit",
        "--balance-usd",
        BALANCE_USD,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *UVICORN_FLAGS,
    ]


def bare_target() -> Target:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bare_app:app",
        "--app-dir",
        str(BENCH_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *UVICORN_FLAGS,
    ]
    return Target("bare", "bare Starlette", command, env={"BENCH_PNG_DIR": str(PNG_DIR)})


def prism_target(prism: list[str]) -> Target:
    command = [*prism, "mock", "-h", "127.0.0.1", "-p", "{port}", "-v", "warn", "openapi.yaml"]
    return Target("prism", "Prism", command, prefix="", ready_timeout_s=90.0)


@contextmanager
def running(target: Target) -> Iterator[Server]:
    """The target started on a free port and healthy; stopped when the block ends."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{target.name}.log"
    command = [part.replace("{port}", str(port)) for part in target.command]
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=REPO_DIR,
            env={**os.environ, **target.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ready_s = wait_healthy(process, port, started, target.ready_timeout_s, log_path)
            yield Server(target=target, pid=process.pid, port=port, ready_s=ready_s)
        finally:
            stop(process)


def wait_healthy(
    process: subprocess.Popen[bytes], port: int, started: float, timeout_s: float, log: Path
) -> float:
    url = f"http://127.0.0.1:{port}/healthz"
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise StartFailed(f"exited with {process.returncode}: {log_tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    raise StartFailed(f"not healthy after {timeout_s:.0f} s: {log_tail(log)}")


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group, SIGKILL after 10 s; then any leftovers."""
    if process.poll() is None:
        signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    signal_group(process.pid, signal.SIGKILL)  # children left in the group, if any


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
