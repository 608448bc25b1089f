"""Measurements other than throughput: fixtures (runs to poll, images), first render time,
start-to-healthy time, RSS and the number of runs a mock holds."""

from __future__ import annotations

import collections
import math
import os
import re
import signal
import statistics
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from loadgen import LUA_DIR, LoadSettings
from targets import Server, Target, running

__all__ = [
    "KEY",
    "body_for",
    "connections_per_process",
    "create_runs",
    "fetch_timed",
    "fill_runs",
    "in_process_render_ms",
    "log_size",
    "rss_mb",
    "startup_seconds",
    "stored_runs",
    "succeeded_output_url",
    "video_body",
]

KEY = "sk-bench"
MODEL = "openai/gpt-image-2"
SIZES = {"1k": ("1:1", "1K"), "4k": ("16:9", "4K")}  # image name -> (aspect_ratio, resolution)
VIDEO_MODEL = "google/veo-3"  # Veo 3.1 Fast: 8 s at 24 fps with audio; 1920x1080 at 1080p 16:9
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def body_for(size: str = "1k", prompt: str = "a lighthouse on a cliff at dawn") -> dict[str, Any]:
    aspect_ratio, resolution = SIZES[size]
    return {
        "model": MODEL,
        "input": {"prompt": prompt, "aspect_ratio": aspect_ratio, "resolution": resolution},
    }


def video_body(prompt: str) -> dict[str, Any]:
    """A 1080p (1920x1080) Veo clip: a common video, rendered in well under a second idle."""
    return {
        "model": VIDEO_MODEL,
        "input": {"prompt": prompt, "aspect_ratio": "16:9", "resolution": "1080p"},
    }


def api(server: Server) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30.0)


def create_runs(server: Server, count: int, body: dict[str, Any]) -> list[str]:
    """Ids of ``count`` runs created through the API, one request after another."""
    path = f"{server.target.prefix}/runs"
    with api(server) as client:
        return [checked(client.post(path, json=body))["id"] for _ in range(count)]


def checked(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def succeeded_output_url(server: Server, body: dict[str, Any], timeout_s: float = 30.0) -> str:
    """Create a run, poll it until it succeeded, and give its first output URL."""
    prefix = server.target.prefix
    with api(server) as client:
        run_id = checked(client.post(f"{prefix}/runs", json=body))["id"]
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            run = checked(client.get(f"{prefix}/runs/{run_id}"))
            if run["status"] == "succeeded":
                url: str = run["output"]["urls"][0]
                return url
            if run["status"] == "failed":
                raise RuntimeError(f"run {run_id} failed: {run.get('error')}")
            time.sleep(0.01)
    raise RuntimeError(f"run {run_id} did not succeed within {timeout_s:.0f} s")


def fetch_timed(server: Server, url: str, timeout_s: float = 30.0) -> tuple[float, bytes]:
    """(milliseconds, body) of one GET of ``url``'s path on ``server``, on a new connection."""
    path = urlparse(url).path
    with httpx.Client(base_url=server.base_url, timeout=timeout_s) as client:
        client.get("/healthz")  # connect first: time the request, not the TCP handshake
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.content


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def in_process_render_ms(size: str, repeats: int) -> list[float]:
    """``mock_runbase.media.images.render_png`` timed in this process, a fresh seed each time."""
    from mock_runbase.media.images import render_png
    from mock_runbase.spec import load_spec

    model = load_spec().catalog.get(MODEL)
    assert model is not None
    width, height = model.output_size(model.with_defaults(body_for(size)["input"]))
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        render_png(width=width, height=height, seed=1000 + seed, lines=[f"bench {seed}"])
        times.append((time.perf_counter() - started) * 1000)
    return times


def startup_seconds(target: Target, repeats: int) -> list[float]:
    """Process start to the first 200 of GET /healthz, for ``repeats`` fresh starts."""
    times = []
    for _ in range(repeats):
        with running(target) as server:
            times.append(server.ready_s)
    return times


def log_size(path: Path) -> tuple[int, int]:
    """(bytes, lines) of a log file, read in chunks (it may hold a line per request)."""
    size = lines = 0
    with suppress(OSError), path.open("rb") as log_file:
        for chunk in iter(lambda: log_file.read(1 << 20), b""):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines


def rss_mb(pid: int) -> float:
    """VmRSS of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def connections_per_process(port: int) -> list[int]:
    """Established connections to ``port`` held by each process, most first (from ``ss -p``;
    empty if ``ss`` is missing or lists none)."""
    command = ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    pids = collections.Counter(re.findall(r"pid=(\d+)", done.stdout))
    return sorted(pids.values(), reverse=True)


def stored_runs(server: Server) -> int:
    """How many runs the bench key's account holds (the mock's /_mock/account)."""
    with api(server) as client:
        runs: int = checked(client.get("/_mock/account"))["runs"]
        return runs


def fill_runs(server: Server, settings: LoadSettings, total: int) -> int:
    """Create runs with wrk until the mock holds at least ``total``; the number it holds.

    wrk's threads stop after their share (BENCH_LIMIT); wrk itself runs for a fixed time, so
    it is interrupted (SIGINT: it still prints its summary) once the count is reached.
    """
    needed = total - stored_runs(server)
    if needed <= 0:
        return stored_runs(server)
    threads = min(settings.threads, settings.connections)
    limit = math.ceil(needed / threads)
    command = [
        settings.wrk,
        f"-t{threads}",
        f"-c{settings.connections}",
        f"-d{60 + needed // 100}s",  # long enough at 100 creates/s; stopped once filled
        "-s",
        str(LUA_DIR / "create.lua"),
        server.base_url,
    ]
    env = {**os.environ, "BENCH_LIMIT": str(limit), "BENCH_PREFIX": server.target.prefix}
    wrk = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_count(server, total, wrk)
    finally:
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)
            try:
                wrk.wait(timeout=15)
            except subprocess.TimeoutExpired:
                wrk.kill()
                wrk.wait()
    return stored_runs(server)


def wait_for_count(server: Server, total: int, wrk: subprocess.Popen[bytes]) -> None:
    """Until the mock holds ``total`` runs, or the count stops growing for 3 s."""
    last, still_since = -1, time.perf_counter()
    while wrk.poll() is None:
        time.sleep(0.25)
        count = stored_runs(server)
        if count >= total:
            return
        if count != last:
            last, still_since = count, time.perf_counter()
        elif time.perf_counter() - still_since > 3:
            return


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
