"""The benchmark's phases, one after another: each starts its server(s), measures, stops them."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from loadgen import LoadSettings, WrkResult, run_wrk, write_ids
from probes import (
    body_for,
    connections_per_process,
    create_runs,
    fetch_timed,
    fill_runs,
    in_process_render_ms,
    is_png,
    median,
    rss_mb,
    startup_seconds,
    succeeded_image_url,
)
from results_model import Outcome, Results
from targets import PNG_DIR, Server, StartFailed, Target, mock_target, running
from tools import CACHE_DIR, log

__all__ = [
    "STORE_WORKLOADS",
    "WORKLOADS",
    "Plan",
    "bench_target",
    "measure_startup",
    "measure_storage",
]

POLL_RUNS = 200
IMAGE_SIZES = ("1k", "4k")
WORKLOADS = {  # name in the report -> (lua script, image size for image workloads)
    "create": ("create", None),
    "poll": ("poll", None),
    "mix 1:10": ("mix", None),
    "image 1K": ("image", "1k"),
    "image 4K": ("image", "4k"),
}
MIX = "mix 1:10"
STORE_WORKLOADS = ("create", "poll", MIX)  # what the shared-store (Redis) targets are driven with


@dataclass(frozen=True)
class Plan:
    load: LoadSettings
    rate: int
    repeats: int  # of first renders and of starts
    stored_runs: int
    profile_to: Path | None  # py-spy's folded stacks of the mock under the mix, if wanted
    py_spy: str | None


def bench_target(target: Target, plan: Plan, results: Results) -> None:
    """Every workload and the fixed rate against one target; a failed start is recorded.

    A shared-store target (the mock on Redis) gets the workloads of ``STORE_WORKLOADS`` only.
    """
    results.labels[target.name] = target.label
    workloads = STORE_WORKLOADS if target.redis_server else tuple(WORKLOADS)
    try:
        with running(target) as server:
            log(f"{target.label}: healthy after {server.ready_s:.2f} s on port {server.port}")
            ready_note = ""
            if target.workers > 1:
                ready_note = (
                    f"all {target.workers} workers answered after {server.all_workers_s:.2f} s"
                )
                log(f"{target.label}: {ready_note}")
            results.add(
                f"ready_{target.name}",
                f"{target.label}: start to healthy",
                server.ready_s,
                "s",
                ready_note,
            )
            rendered = measure_first_renders(server, plan, results) if target.name == "mock" else {}
            images = image_paths(server, results, rendered) if not target.redis_server else {}
            env = base_env(server)
            for workload in workloads:
                script, size = WORKLOADS[workload]
                with connection_census(server, plan, workload) as spread:
                    results.load.setdefault(workload, {})[target.name] = run_workload(
                        server, plan, env, script, images.get(size) if size else ""
                    )
                if spread:
                    results.spread[target.name] = spread
            if target.redis_server:
                return
            log(f"{target.label}: mix at {plan.rate} requests/s")
            paced = {**env, "BENCH_RATE": str(plan.rate)}
            results.fixed[target.name] = guarded(plan, server, "mix", paced)
            if target.name == "mock":
                measure_cached_images(server, plan, images, results)
                if plan.profile_to and plan.py_spy:
                    profile_mix(server, plan, env, plan.profile_to, plan.py_spy)
    except StartFailed as failure:
        why = f"n/a: {target.label} did not start ({failure})"
        results.notes.append(why)
        log(why)
        for workload in workloads:
            results.load.setdefault(workload, {})[target.name] = why
        if not target.redis_server:
            results.fixed[target.name] = why


@contextmanager
def connection_census(server: Server, plan: Plan, workload: str) -> Iterator[list[int]]:
    """For a target of several workers, during the mix: how many of wrk's connections each
    worker holds, counted once halfway through the measured run (empty list otherwise)."""
    counts: list[int] = []
    if server.target.workers < 2 or workload != MIX:
        yield counts
        return
    halfway = plan.load.warmup_s + plan.load.duration_s / 2
    timer = threading.Timer(halfway, lambda: counts.extend(connections_per_process(server.port)))
    timer.start()
    try:
        yield counts
    finally:
        timer.cancel()
        timer.join()


def base_env(server: Server) -> dict[str, str]:
    ids = create_runs(server, POLL_RUNS, body_for("1k"))
    time.sleep(0.3)  # past the fast profile's ~50 ms: the polled runs have succeeded
    ids_file = write_ids(CACHE_DIR / f"ids-{server.target.name}.txt", ids)
    return {"BENCH_PREFIX": server.target.prefix, "BENCH_IDS": ids_file}


def run_workload(
    server: Server, plan: Plan, env: dict[str, str], script: str, image: str | None
) -> Outcome:
    if image is None:
        return "n/a: no PNG to fetch"
    if image.startswith("n/a"):
        return image
    log(f"{server.target.label}: {script} {image}".rstrip())
    return guarded(plan, server, script, {**env, "BENCH_PATH": image})


def guarded(plan: Plan, server: Server, script: str, env: dict[str, str]) -> Outcome:
    """A wrk run, or "n/a: why" when wrk printed no result (the run goes on)."""
    try:
        return run_wrk(plan.load, server.base_url, script, env)
    except (RuntimeError, subprocess.TimeoutExpired) as problem:
        log(f"{server.target.label}: {script}: {problem}")
        return f"n/a: {problem}"


def image_paths(server: Server, results: Results, rendered: dict[str, str]) -> dict[str, str]:
    """Path of a cached 1K and 4K PNG on this server, or "n/a: why" for each.

    ``rendered``: the paths of the images the mock rendered for the first-render probe.
    """
    if server.target.name == "mock":
        return rendered
    if server.target.name == "bare":
        return {size: f"/files/generated/{size}.png" for size in IMAGE_SIZES}
    url = succeeded_image_url(server, body_for("1k"))
    _, data = fetch_timed(server, url)
    if is_png(data):
        return dict.fromkeys(IMAGE_SIZES, urlparse(url).path)
    why = f"n/a: {server.target.label} answers {len(data)} bytes ({data[:16]!r}), not a PNG"
    results.notes.append(f"image workloads {why}")
    return dict.fromkeys(IMAGE_SIZES, why)


def measure_first_renders(server: Server, plan: Plan, results: Results) -> dict[str, str]:
    """First GET of a fresh run's image (a render) and the second (cached), over HTTP.

    Gives the path of the last image rendered of each size, and saves its bytes for the bare
    app, so both serve the same PNGs.
    """
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for size in ("4k", "1k"):
        first, again = [], []
        for repeat in range(plan.repeats):
            prompt = f"first render {size} #{repeat} {time.time_ns()}"
            url = succeeded_image_url(server, body_for(size, prompt))
            first_ms, data = fetch_timed(server, url)
            cached_ms, _ = fetch_timed(server, url)
            first.append(first_ms)
            again.append(cached_ms)
            (PNG_DIR / f"{size}.png").write_bytes(data)  # the bare app serves the same bytes
            paths[size] = urlparse(url).path
        spread = f"median of {len(first)}; max {max(first):.1f} ms; {len(data) // 1024} KiB"
        results.add(
            f"first_{size}", f"first render {size.upper()} (HTTP GET)", median(first), "ms", spread
        )
        results.add(
            f"second_{size}",
            f"second GET {size.upper()} (cached, one request)",
            median(again),
            "ms",
        )
        inproc = in_process_render_ms(size, plan.repeats)
        results.add(
            f"render_{size}",
            f"render_png {size.upper()} in process",
            median(inproc),
            "ms",
            f"median of {len(inproc)}",
        )
    return paths


def measure_cached_images(
    server: Server, plan: Plan, images: dict[str, str], results: Results
) -> None:
    """Latency of a cached image on one connection, one request at a time."""
    for size in IMAGE_SIZES:
        log(f"{server.target.label}: cached {size} on one connection")
        one = run_wrk(
            plan.load,
            server.base_url,
            "image",
            {"BENCH_PATH": images[size]},
            connections=1,
            duration_s=max(1.0, plan.load.duration_s / 2),
        )
        note = f"{one.rps:.0f} requests/s; p99 {one.p99_ms:.2f} ms"
        results.add(
            f"cached_{size}_p50",
            f"cached {size.upper()} GET, 1 connection, p50",
            one.p50_ms,
            "ms",
            note,
        )
        results.add(
            f"cached_{size}_p99", f"cached {size.upper()} GET, 1 connection, p99", one.p99_ms, "ms"
        )


def profile_mix(server: Server, plan: Plan, env: dict[str, str], out: Path, py_spy: str) -> None:
    """py-spy's folded stacks of the mock while wrk drives the mix (not a measured run)."""
    seconds = max(3, round(plan.load.duration_s))
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        py_spy,
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--format",
        "raw",
        "--function",
        "--output",
        str(out),
    ]
    log(f"profiling the mock under the mix for {seconds} s: {out}")
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        run_wrk(plan.load, server.base_url, "mix", env, duration_s=seconds, warmup=False)
    finally:
        _, err = spy.communicate(timeout=60)
    if spy.returncode != 0:
        log(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
        return
    out.with_suffix(".txt").write_text(summarize_profile(out.read_text()))


IDLE_LEAVES = ("Condition.wait ", "Queue.get ", "Event.wait ")  # pool threads with no work


def summarize_profile(folded: str, top: int = 30) -> str:
    """Top functions by own samples and with callees, and own samples by file, from folded
    stacks (``frame;frame;... count``); samples of idle worker threads are left out."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or not count_text.isdigit() or frames[-1].startswith(IDLE_LEAVES):
            continue
        count = int(count_text)
        samples += count
        own[frames[-1]] += count
        files[frame_file(frames[-1])] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples (idle pool threads left out)", "", "own time (self):"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "own time by file:"]
    lines += [f"{n / samples:6.1%}  {name}" for name, n in files.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def frame_file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    _, _, where = frame.rpartition(" (")
    return where.rstrip(")").rpartition(":")[0] or where


def measure_startup(plan: Plan, results: Results) -> None:
    times = startup_seconds(mock_target("fast"), max(3, plan.repeats))
    note = f"median of {len(times)}; max {max(times):.2f} s"
    results.add("healthy", "mock: process start to /healthz 200", median(times), "s", note)


def measure_storage(plan: Plan, results: Results) -> None:
    """RSS and poll latency of a mock (instant timing) holding 1k, then ``stored_runs`` runs."""
    try:
        with running(mock_target("instant", "mock-runbase (instant)")) as server:
            results.add("rss_empty", "mock RSS, no runs", rss_mb(server.pid), "MB")
            env = base_env(server)
            for total, tag in ((1000, "1k"), (plan.stored_runs, "big")):
                held = fill_runs(server, plan.load, total)
                log(f"storage: the mock holds {held} runs")
                time.sleep(0.5)
                rss = rss_mb(server.pid)
                poll = run_wrk(
                    plan.load, server.base_url, "poll", env, duration_s=plan.load.duration_s / 2
                )
                record_storage(results, tag, held, rss, poll)
    except StartFailed as failure:
        results.notes.append(f"storage phase: the mock did not start ({failure})")


def record_storage(results: Results, tag: str, held: int, rss: float, poll: WrkResult) -> None:
    count = f"{held:,}"
    results.add(f"rss_{tag}", f"mock RSS, {count} runs stored", rss, "MB")
    results.add(f"runs_{tag}", "runs stored", held, "runs")
    note = f"{poll.rps:.0f} requests/s; p99 {poll.p99_ms:.2f} ms"
    results.add(f"poll_{tag}_p50", f"poll p50, {count} runs stored", poll.p50_ms, "ms", note)
    results.add(f"poll_{tag}_p99", f"poll p99, {count} runs stored", poll.p99_ms, "ms")
