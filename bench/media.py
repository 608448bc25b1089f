"""The mock's media over HTTP: first renders, cached serves, and polls while renders run."""

from __future__ import annotations

import math
import threading
import time
from typing import Any
from urllib.parse import urlparse

import httpx
from loadgen import run_wrk
from plan import Plan, guarded
from probes import (
    body_for,
    fetch_timed,
    in_process_render_ms,
    median,
    succeeded_output_url,
    video_body,
)
from results_model import Render, Results, StallTest
from targets import PNG_DIR, Server
from tools import log

__all__ = [
    "MEDIA",
    "SHORT",
    "measure_cached_media",
    "measure_first_renders",
    "measure_render_stall",
]

MEDIA = {  # key -> how the report names it
    "4k": "4K PNG (gpt-image-2 16:9 4K, 3840x2160)",
    "1k": "1K PNG (gpt-image-2 1:1 1K, 1024x1024)",
    "video": "1080p MP4 (Veo 3 16:9 1080p, 8 s at 24 fps, AAC)",
}
IMAGE_SIZES = ("1k", "4k")
SHORT = {"4k": "4K PNG", "1k": "1K PNG", "video": "1080p MP4"}
STALL_WINDOW = (0.05, 0.5)  # renders start spread over this part of the measured poll run


def fresh_body(key: str, prompt: str) -> dict[str, Any]:
    return video_body(prompt) if key == "video" else body_for(key, prompt)


def measure_first_renders(server: Server, plan: Plan, results: Results) -> dict[str, str]:
    """First GET of a fresh run's media (a render) and the second (cached), over HTTP.

    Gives the path of the last file rendered of each kind, and saves the PNGs for the bare
    app, so both serve the same bytes.
    """
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for key in MEDIA:
        first, again, data = [], [], b""
        for repeat in range(plan.repeats):
            prompt = f"first render {key} #{repeat} {time.time_ns()}"
            url = succeeded_output_url(server, fresh_body(key, prompt))
            first_ms, data = fetch_timed(server, url)
            cached_ms, _ = fetch_timed(server, url)
            first.append(first_ms)
            again.append(cached_ms)
            paths[key] = urlparse(url).path
        if key in IMAGE_SIZES:
            (PNG_DIR / f"{key}.png").write_bytes(data)  # the bare app serves the same bytes
        spread = f"median of {len(first)}; max {max(first):.1f} ms; {len(data) // 1024} KiB"
        results.add(
            f"first_{key}", f"first render, {SHORT[key]} (HTTP GET)", median(first), "ms", spread
        )
        results.add(f"second_{key}", f"second GET, {SHORT[key]} (cached)", median(again), "ms")
        if key in IMAGE_SIZES:
            inproc = in_process_render_ms(key, plan.repeats)
            note = f"median of {len(inproc)}"
            results.add(
                f"render_{key}", f"render_png {key.upper()} in process", median(inproc), "ms", note
            )
    return paths


def measure_cached_media(
    server: Server, plan: Plan, paths: dict[str, str], results: Results
) -> None:
    """Latency of each cached file on one connection, one request at a time."""
    for key, path in paths.items():
        log(f"{server.target.label}: cached {SHORT[key]} on one connection")
        one = run_wrk(
            plan.load,
            server.base_url,
            "image",
            {"BENCH_PATH": path},
            connections=1,
            duration_s=max(1.0, plan.load.duration_s / 2),
            warmup=False,  # the server is warm, the file cached: nothing left to warm up
        )
        note = f"{one.rps:.0f} requests/s; p99 {one.p99_ms:.2f} ms"
        label = f"cached {SHORT[key]} GET, 1 connection"
        results.add(f"cached_{key}_p50", f"{label}, p50", one.p50_ms, "ms", note)
        results.add(f"cached_{key}_p99", f"{label}, p99", one.p99_ms, "ms")


def measure_render_stall(server: Server, plan: Plan, env: dict[str, str], results: Results) -> None:
    """The poll workload with nothing rendering, then again while fresh 4K PNGs and 1080p
    MP4s render (their first GETs, started one after another early in the measured run)."""
    urls = stall_urls(server, plan.stall_renders)
    log(f"{server.target.label}: polls with nothing rendering")
    idle = guarded(plan, server, "poll", env)
    log(f"{server.target.label}: polls while {len(urls)} renders run")
    renders: list[Render] = []
    window = plan.load.duration_s
    first, last = (window * share for share in STALL_WINDOW)
    step = (last - first) / max(1, len(urls) - 1)
    started = time.perf_counter()
    timers = [
        threading.Timer(first + i * step, render_once, (server, what, url, started, renders))
        for i, (what, url) in enumerate(urls)
    ]
    for timer in timers:
        timer.start()
    try:
        rendering = guarded(plan, server, "poll", env, warmup=False)
    finally:
        for timer in timers:
            timer.join()
    results.stall = StallTest(idle, rendering, sorted(renders, key=lambda r: r.started_s))


def stall_urls(server: Server, per_kind: int) -> list[tuple[str, str]]:
    """Output URLs of fresh runs (new prompts, so nothing cached), video and 4K alternating."""
    urls = []
    for i in range(per_kind):
        for key in ("video", "4k"):
            prompt = f"render during polls {key} #{i} {time.time_ns()}"
            urls.append((SHORT[key], succeeded_output_url(server, fresh_body(key, prompt))))
    return urls


def render_once(server: Server, what: str, url: str, origin: float, into: list[Render]) -> None:
    began = time.perf_counter()
    try:
        took_ms, _ = fetch_timed(server, url, timeout_s=120.0)
        took = took_ms / 1000
    except (httpx.HTTPError, OSError) as problem:
        log(f"render of {url} failed: {problem}")
        took = math.nan
    into.append(Render(what, began - origin, took))
