"""The servers under test, and starting/stopping one on a free loopback port.

Every server runs as one process group of its own, logs to ``bench/.cache/logs`` and is
stopped (SIGTERM, then SIGKILL) when its ``running()`` block ends, whatever happened inside.
The shared-store targets (the mock on Redis) get a fresh ``redis-server`` of their own for
the same block, stopped the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
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
    "redis_command",
    "redis_target",
    "running",
    "serve_args",
]

LOG_DIR = CACHE_DIR / "logs"
PNG_DIR = CACHE_DIR / "pngs"
BALANCE_USD = "1000000000"  # creates must never run out of money during a benchmark
# The ceiling runs quiet; the mock targets keep a user's defaults (per-request log lines on).
BARE_FLAGS = ["--log-level", "warning"]
REDIS_FLAGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]  # nothing on disk


class StartFailed(RuntimeError):
    """The server exited or never became healthy; the message says why (log tail included)."""


@dataclass(frozen=True)
class Target:
    name: str  # "mock", "prism", "bare", "redis1", "redis2"
    label: str
    command: list[str]  # "{port}" is replaced by the port, "{redis}" by the Redis URL
    prefix: str = "/v1"  # where the runs API lives
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    redis_server: str | None = None  # the binary, if the target needs a redis-server of its own
    workers: int = 1  # processes answering; ready once every one of them answered /healthz
    # Prism serves only openapi.yaml, which has no /healthz: any HTTP answer means it is up
    any_answer_is_ready: bool = False


@dataclass(frozen=True)
class Server:
    target: Target
    pid: int
    port: int
    ready_s: float  # from the process start to the first 200 of GET /healthz
    all_workers_s: float  # from the process start to a 200 from every worker (= ready_s for 1)
    log_path: Path  # the server's stdout and stderr: a file, so log lines never fill a pipe
    store_pid: int | None = None  # the target's own redis-server, if it has one

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def mock_command() -> list[str]:
    script = Path(sys.executable).parent / "mock-runbase"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mock_runbase"]


def mock_target(timing: str = "fast", label: str = "mock-runbase", name: str = "mock") -> Target:
    return Target(name, label, [*mock_command(), *serve_args(timing)])


def serve_args(timing: str) -> list[str]:
    """``mock-runbase serve`` as benchmarked: a user's defaults (log level included) but for
    loopback on a free port, no rate limit and money to spare."""
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
    ]


def redis_target(redis_server: str, workers: int) -> Target:
    """The mock as benchmarked, on a fresh redis-server: ``--store redis://...`` and, for more
    than one, ``--workers N``."""
    store = ["--store", "{redis}", *(["--workers", str(workers)] if workers > 1 else [])]
    label = f"mock-runbase, Redis, {workers} worker{'s' if workers > 1 else ''}"
    command = [*mock_command(), *serve_args("fast"), *store]
    return Target(f"redis{workers}", label, command, redis_server=redis_server, workers=workers)


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
        *BARE_FLAGS,
    ]
    return Target("bare", "bare Starlette", command, env={"BENCH_PNG_DIR": str(PNG_DIR)})


def prism_target(prism: list[str]) -> Target:
    command = [*prism, "mock", "-h", "127.0.0.1", "-p", "{port}", "-v", "warn", "openapi.yaml"]
    return Target(
        "prism", "Prism", command, prefix="", ready_timeout_s=90.0, any_answer_is_ready=True
    )


@contextmanager
def running(target: Target) -> Iterator[Server]:
    """The target started on a free port and healthy; stopped when the block ends (and its
    redis-server, if it has one, after it)."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{target.name}.log"
    with ExitStack() as stack:
        fills = {"{port}": str(port)}
        store_pid = None
        if target.redis_server:
            redis = stack.enter_context(redis_running(target.redis_server, target.name))
            fills["{redis}"], store_pid = redis.url, redis.pid
        command = [filled(part, fills) for part in target.command]
        log = stack.enter_context(log_path.open("wb"))
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
        stack.callback(stop, process)
        ready_s = wait_healthy(process, port, started, target, log_path)
        all_s = ready_s
        if target.workers > 1:
            all_s = wait_workers(process, port, target, started, log_path)
        yield Server(
            target=target,
            pid=process.pid,
            port=port,
            ready_s=ready_s,
            all_workers_s=all_s,
            log_path=log_path,
            store_pid=store_pid,
        )


def filled(part: str, fills: dict[str, str]) -> str:
    for placeholder, value in fills.items():
        part = part.replace(placeholder, value)
    return part


def wait_healthy(
    process: subprocess.Popen[bytes], port: int, started: float, target: Target, log: Path
) -> float:
    url = f"http://127.0.0.1:{port}/healthz"
    timeout_s = target.ready_timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise StartFailed(f"exited with {process.returncode}: {log_tail(log)}")
            try:
                status = client.get(url).status_code
                if status == 200 or target.any_answer_is_ready:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    raise StartFailed(f"not healthy after {timeout_s:.0f} s: {log_tail(log)}")


def wait_workers(
    process: subprocess.Popen[bytes], port: int, target: Target, started: float, log: Path
) -> float:
    """Seconds from the start until ``target.workers`` distinct ``X-Mock-Worker`` values
    answered ``GET /healthz``, each asked over a fresh connection (the workers share the
    listening socket: a new connection goes to whichever accepts it)."""
    url = f"http://127.0.0.1:{port}/healthz"
    seen: set[str] = set()
    while time.perf_counter() - started < target.ready_timeout_s:
        if process.poll() is not None:
            raise StartFailed(f"exited with {process.returncode}: {log_tail(log)}")
        try:
            with httpx.Client(timeout=2.0) as client:  # one connection per request
                answer = client.get(url)
            worker = answer.headers.get("x-mock-worker")
            if answer.status_code == 200 and worker:
                seen.add(worker)
                if len(seen) >= target.workers:
                    return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise StartFailed(
        f"{len(seen)} of {target.workers} workers answered within "
        f"{target.ready_timeout_s:.0f} s: {log_tail(log)}"
    )


def redis_command(binary: str, port: int | str, folder: str) -> list[str]:
    return [binary, "--port", str(port), "--dir", folder, *REDIS_FLAGS]


@dataclass(frozen=True)
class RedisServer:
    url: str  # redis://127.0.0.1:PORT/0
    pid: int


@contextmanager
def redis_running(binary: str, name: str, timeout_s: float = 10.0) -> Iterator[RedisServer]:
    """A redis-server of its own (free loopback port, temporary directory, no persistence),
    flushed; stopped when the block ends."""
    port = free_port()
    log_path = LOG_DIR / f"redis-{name}.log"
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as folder,
        log_path.open("wb") as log,
    ):
        process = subprocess.Popen(
            redis_command(binary, port, folder),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.perf_counter() + timeout_s
            while redis_call(port, b"PING") != b"+PONG":
                if process.poll() is not None or time.perf_counter() > deadline:
                    raise StartFailed(f"redis-server did not start: {log_tail(log_path)}")
                time.sleep(0.02)
            if redis_call(port, b"FLUSHALL") != b"+OK":  # empty already: nothing carries over
                raise StartFailed(f"redis-server refused FLUSHALL: {log_tail(log_path)}")
            yield RedisServer(f"redis://127.0.0.1:{port}/0", process.pid)
        finally:
            stop(process)


def redis_call(port: int, command: bytes) -> bytes | None:
    """The first line of Redis's answer to an inline command, or None if it did not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return None


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
