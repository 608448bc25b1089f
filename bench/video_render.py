"""First render and cached serving of the placeholder MP4s (``mock_runbase.media.video``).

    python bench/video_render.py [--repeats 3] [--output bench/results]

In this process, after one small unmeasured render (PyAV, libx264 and the fonts warmed up, as
in a server that has rendered before): each case is rendered ``--repeats`` times with a fresh
seed (nothing cached, the cost of a first request for new content), timing the wall clock and
the CPU of the whole process (all threads: the clip's two halves are encoded at once). Then
the cost of serving it again: a ``MediaCache.get`` of the rendered bytes. Prints a markdown
table and writes it to ``video.md``. A separate process times the import of the renderer.

The cases: the smallest and the largest clip the catalog asks for (seedance 480p 16:9, 4 s at
24 fps without audio; kling 4K, 15 s at 60 fps with audio) and a common one between (1080p,
8 s at 24 fps with audio). The machine has 2 cores; anything else running shows up as noise,
so the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools import BENCH_DIR, common_facts, log, package_version

from mock_runbase.media.cache import MediaCache
from mock_runbase.media.video import frame_count, render_mp4


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    height: int
    duration_s: float
    fps: int
    audio: bool


CASES = (
    Case("smallest: 480p", 864, 480, 4.0, 24, False),
    Case("1080p with audio", 1920, 1080, 8.0, 24, True),
    Case("largest: 4K 60 fps", 3840, 2160, 15.0, 60, True),
)
CACHE_GETS = 200_000


@dataclass(frozen=True)
class Measured:
    case: Case
    wall_s: list[float]
    cpu_s: list[float]
    size: int
    cached_get_us: float
    peak_rss_mb: float  # of the process so far (the cases run smallest first)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def render(case: Case, seed: int) -> bytes:
    title = [
        f"bench clip {seed}: a lighthouse on a cliff at dawn",
        f"{case.width}x{case.height} · {case.duration_s:g} s · {case.fps} fps",
        "bench · mock-runbase",
    ]
    return render_mp4(
        width=case.width,
        height=case.height,
        duration_s=case.duration_s,
        fps=case.fps,
        audio=case.audio,
        title_lines=title,
        seed=seed,
    )


def measure(case: Case, repeats: int) -> Measured:
    walls, cpus, data = [], [], b""
    for repeat in range(repeats):
        log(f"{case.name}: render {repeat + 1} of {repeats}")
        started, cpu = time.perf_counter(), cpu_seconds()
        data = render(case, seed=1000 + repeat)
        walls.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
    cache = MediaCache(max_bytes=256 * 1024 * 1024)
    cache.get_or_render("clip", lambda: data)
    started = time.perf_counter()
    for _ in range(CACHE_GETS):
        cache.get("clip")
    cached_us = (time.perf_counter() - started) / CACHE_GETS * 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Measured(case, walls, cpus, len(data), cached_us, peak_mb)


def import_seconds() -> float:
    """Wall time of ``import mock_runbase.media.video`` in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import mock_runbase.media.video; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(results: list[Measured], facts: dict[str, str], repeats: int) -> str:
    lines = [
        "# Placeholder MP4s: first render and cached serving",
        "",
        "Made by `python bench/video_render.py` (see its docstring). Numbers from one machine,",
        "one run.",
        "",
        "| machine |  |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        "",
        f"First render: median of {repeats} renders, each with a fresh seed (min in brackets);",
        "CPU is the whole process's, all threads: CPU over wall is the parallelism of the",
        "two halves' encoders. Cached: one `MediaCache.get` of the rendered bytes. Peak RSS: the",
        "process's high-water mark after the clip's renders (the clips run smallest first).",
        "",
        "| clip | frames | audio | first render | CPU | size | bitrate | cached | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        case = m.case
        frames = frame_count(
            width=case.width, height=case.height, duration_s=case.duration_s, fps=case.fps
        )
        clip = f"{case.name}, {case.width}x{case.height}, {case.duration_s:g} s at {case.fps} fps"
        wall = f"{statistics.median(m.wall_s):.2f} s ({min(m.wall_s):.2f})"
        cpu = f"{statistics.median(m.cpu_s):.2f} s"
        size = f"{m.size / 1e6:.2f} MB" if m.size >= 1e6 else f"{m.size / 1e3:.0f} KB"
        bitrate = f"{m.size * 8 / case.duration_s / 1e3:.0f} kbit/s"
        cached = f"{m.cached_get_us:.2f} us"
        audio = "AAC" if case.audio else "none"
        rss = f"{m.peak_rss_mb:.0f} MB"
        lines.append(
            f"| {clip} | {frames} | {audio} | {wall} | {cpu} | {size} | {bitrate} | {cached} "
            f"| {rss} |"
        )
    return "\n".join(lines) + "\n"


HTTP_CASES = (  # (label, model, input): the smallest and the largest video the catalog makes
    (
        "smallest: Seedance 1.5 Pro 480p 4 s",
        "bytedance/seedance-1.5-pro",
        {"resolution": "480p", "duration": "4", "generate_audio": False},
    ),
    ("largest: Kling 3.0 4K 15 s", "kling/kling-3.0", {"mode": "4K", "duration": 15}),
)
HTTP_GETS = 200


def http_serves() -> list[str]:
    """Markdown rows: a cached video served by the whole app (in process, over ASGI, no
    socket): the first GET (which renders) and the median of later whole and 1 MB ranged GETs."""
    import asyncio
    import statistics

    import httpx

    from mock_runbase.app import create_app
    from mock_runbase.settings import MockSettings

    async def one(model: str, fields: dict[str, object]) -> tuple[float, float, float, int]:
        app = create_app(MockSettings(timing="instant", clock="virtual", rate_limit=None))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock.bench") as client:
            auth = {"Authorization": "Bearer sk-bench"}
            body = {"model": model, "input": {"prompt": "a benchmark", **fields}}
            run = (await client.post("/v1/runs", json=body, headers=auth)).json()
            done = (await client.get(f"/v1/runs/{run['id']}", headers=auth)).json()
            url = done["output"]["urls"][0]
            started = time.perf_counter()
            size = len((await client.get(url)).content)
            first = time.perf_counter() - started
            wholes, ranges = [], []
            for _ in range(HTTP_GETS):
                started = time.perf_counter()
                await client.get(url)
                wholes.append(time.perf_counter() - started)
                started = time.perf_counter()
                await client.get(url, headers={"Range": "bytes=0-1048575"})
                ranges.append(time.perf_counter() - started)
        return first, statistics.median(wholes), statistics.median(ranges), size

    rows = [
        "",
        "Served by the app (in process over ASGI, no socket; `--timing instant`): the first",
        f"GET renders, then the median of {HTTP_GETS} whole GETs and {HTTP_GETS} GETs of",
        "`Range: bytes=0-1048575` from the cache.",
        "",
        "| video | size | first GET (render) | cached GET | cached 1 MB range |",
        "|---|---|---|---|---|",
    ]
    for label, model, fields in HTTP_CASES:
        log(f"serving {label}")
        first, whole, ranged, size = asyncio.run(one(model, fields))
        rows.append(
            f"| {label} | {size / 1e6:.2f} MB | {first:.2f} s | {whole * 1000:.2f} ms "
            f"| {ranged * 1000:.2f} ms |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="renders per clip (3)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results", help="video.md here")
    args = parser.parse_args()
    facts = {
        **common_facts(),
        "PyAV": package_version("av"),
        "numpy": package_version("numpy"),
        "pillow": package_version("pillow"),
        "load average at start": load_average(),
    }
    facts["import mock_runbase.media.video (fresh process)"] = f"{import_seconds():.2f} s"
    log("warm-up render")
    render(Case("warm-up", 64, 48, 0.5, 24, True), seed=0)
    results = [measure(case, args.repeats) for case in CASES]
    facts["load average at end"] = load_average()
    text = report(results, facts, args.repeats) + "\n".join(http_serves()) + "\n"
    print(text)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "video.md").write_text(text)
    log(f"wrote {args.output / 'video.md'}")


if __name__ == "__main__":
    main()
