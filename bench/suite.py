"""The benchmark's phases, one after another: each starts its server(s), measures, stops them."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
from loadgen import run_wrk
from media import measure_cached_media, measure_first_renders, measure_render_stall
from plan import MIX, STORE_WORKLOADS, WORKLOADS, Plan, base_env, guarded, record_log_size
from probes import (
    body_for,
    connections_per_process,
    fetch_timed,
    is_png,
    median,
    startup_seconds,
    succeeded_output_url,
)
from results_model import Outcome, Results
from targets import Server, StartFailed, Target, mock_target, running
from tools import log, pinned

__all__ = ["bench_target", "measure_startup"]

IMAGE_SIZES = ("1k", "4k")


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
            # one process pinned to one core, wrk to the other; a Redis target's workers and
            # redis-server share both cores with wrk, as they would on a 2-core machine
            with pinned(server.pid, wanted=not target.redis_server):
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
                mock_extras(server, plan, env, rendered, results)
            record_log_size(server, results)
    except StartFailed as failure:
        why = f"n/a: {target.label} did not start ({failure})"
        results.notes.append(why)
        log(why)
        for workload in workloads:
            results.load.setdefault(workload, {})[target.name] = why
        if not target.redis_server:
            results.fixed[target.name] = why


def throughput_round(target: Target, plan: Plan) -> dict[str, Outcome]:
    """One more round of the closed-loop create, poll and mix against a fresh ``target``,
    pinned as in ``bench_target``; a failed start is "n/a: why" for each."""
    found: dict[str, Outcome] = {}
    try:
        with running(target) as server:
            env = base_env(server)
            with pinned(server.pid):
                for workload in STORE_WORKLOADS:
                    log(f"{target.label}: {workload} (another round)")
                    found[workload] = guarded(plan, server, WORKLOADS[workload][0], env)
    except StartFailed as failure:
        found = dict.fromkeys(STORE_WORKLOADS, f"n/a: {target.label} did not start ({failure})")
    return found


def mock_extras(
    server: Server, plan: Plan, env: dict[str, str], rendered: dict[str, str], results: Results
) -> None:
    """What only the mock is measured on: cached media, polls while rendering, the profile."""
    measure_cached_media(server, plan, rendered, results)
    measure_render_stall(server, plan, env, results)
    if plan.profile_to and plan.py_spy:
        profile_mix(server, plan, env, plan.profile_to, plan.py_spy)


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


def run_workload(
    server: Server, plan: Plan, env: dict[str, str], script: str, image: str | None
) -> Outcome:
    if image is None:
        return "n/a: no PNG to fetch"
    if image.startswith("n/a"):
        return image
    log(f"{server.target.label}: {script} {image}".rstrip())
    return guarded(plan, server, script, {**env, "BENCH_PATH": image})


def image_paths(server: Server, results: Results, rendered: dict[str, str]) -> dict[str, str]:
    """Path of a cached 1K and 4K PNG on this server, or "n/a: why" for each.

    ``rendered``: the paths of the images the mock rendered for the first-render probe.
    """
    if server.target.name == "mock":
        return rendered
    if server.target.name == "bare":
        return {size: f"/files/generated/{size}.png" for size in IMAGE_SIZES}
    url = succeeded_output_url(server, body_for("1k"))
    try:
        _, data = fetch_timed(server, url)
    except httpx.HTTPStatusError as refused:
        status = refused.response.status_code
        why = f"n/a: {server.target.label} answers {status} to its own output URL ({url})"
    else:
        if is_png(data):
            return dict.fromkeys(IMAGE_SIZES, urlparse(url).path)
        why = f"n/a: {server.target.label} answers {len(data)} bytes ({data[:16]!r}), not a PNG"
    results.notes.append(f"image workloads {why}")
    return dict.fromkeys(IMAGE_SIZES, why)


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
        # Pausing the process for each sample lands the samples on system calls: a getpid()
        # inside asyncio.get_running_loop() took 12-15% of them, against none unpaused.
        "--nonblocking",
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
