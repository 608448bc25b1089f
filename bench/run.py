"""Benchmark mock-runbase side by side with Prism and bare Starlette: ``python bench/run.py``.

Starts each server on loopback in turn, drives it with wrk (bench/lua/), measures first
render, start-up, RSS and poll latency with many runs stored, and the mock on a shared Redis
store with 1 and 2 workers, then writes bench/results/latest.md and latest.png and prints the
markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from loadgen import LoadSettings
from plan import STORE_WORKLOADS, WORKLOADS, Plan, median_round, shown_rounds
from report import render_markdown, write_chart
from results_model import Results
from stored import measure_stored
from suite import bench_target, measure_startup, throughput_round
from targets import Target, bare_target, mock_target, prism_target, redis_command, redis_target
from tools import (
    BENCH_DIR,
    REPO_DIR,
    ensure_matplotlib,
    ensure_prism,
    ensure_py_spy,
    ensure_redis_server,
    ensure_wrk,
    log,
    machine_facts,
    positive,
    positive_seconds,
    seconds,
)

TARGETS = ("mock", "prism", "bare", "redis1", "redis2")
REDIS_TARGETS = {"redis1": 1, "redis2": 2}  # target -> workers, on a fresh redis-server each
FULL_STORED = (10_000, 1_000_000)
QUICK_STORED = (10_000, 200_000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--duration", type=positive_seconds, default=10.0, help="seconds per measured workload (10)"
    )
    add("--warmup", type=seconds, default=2.0, help="unmeasured seconds before each (2)")
    add("--quick", action="store_true", help="3 s per workload, 1 s warm-up, 1 repeat")
    add("--connections", type=positive, default=32, help="wrk connections (32)")
    add("--threads", type=positive, default=1, help="wrk threads (1)")
    add("--rate", type=positive, default=500, help="requests/s of the fixed-rate mix (500)")
    add(
        "--stored-runs",
        type=run_counts,
        default=None,
        help="runs stored for RSS and tails, fewest first (10000,1000000; --quick 10000,200000)",
    )
    add("--repeats", type=positive, default=3, help="first renders and starts measured (3)")
    add(
        "--rounds",
        type=positive,
        default=None,
        help="rounds of the closed-loop create, poll and mix of the single-process targets, "
        "each on a fresh server, targets in a rotating order; the median counts (3; --quick 1)",
    )
    add(
        "--targets",
        default=",".join(TARGETS),
        help="which of mock,prism,bare,redis1,redis2 to drive (all)",
    )
    add("--no-storage", action="store_true", help="skip the stored-runs phase")
    add(
        "--renders",
        type=positive,
        default=None,
        help="4K PNGs and as many 1080p MP4s rendered during the poll run (3; --quick 2)",
    )
    add("--profile", action="store_true", help="py-spy the mock under the mix (installs py-spy)")
    add("--output", type=Path, default=BENCH_DIR / "results", help="where latest.md/png go")
    return parser


def run_counts(text: str) -> tuple[int, ...]:
    """``10000,1000000`` (``1e6``, ``200k`` and ``1M`` too): positive counts, increasing."""
    try:
        counts = tuple(count(part) for part in text.split(","))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of counts (10000,1000000)"
        ) from None
    if any(n <= 0 for n in counts) or list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"{text!r}: the counts must be positive and increasing")
    return counts


def count(part: str) -> int:
    part = part.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
    return round(float(part.rstrip("km")) * scale)


def load_settings(args: argparse.Namespace, wrk: str) -> LoadSettings:
    duration, warmup = (3.0, 1.0) if args.quick else (args.duration, args.warmup)
    return LoadSettings(wrk, args.threads, args.connections, duration, warmup)


def chosen_targets(names: list[str], results: Results) -> list[Target]:
    targets = []
    redis: tuple[str | None, str] | None = None  # ensure_redis_server(), once
    for name in names:
        if name == "mock":
            targets.append(mock_target("fast"))
        elif name == "bare":
            targets.append(bare_target())
        elif name == "prism":
            prism, note = ensure_prism()
            if prism is None:
                record_missing("prism", "Prism", f"n/a: Prism unavailable ({note})", results)
            else:
                results.machine["prism"] = note
                targets.append(prism_target(prism))
        elif name in REDIS_TARGETS:
            workers = REDIS_TARGETS[name]
            results.shared[name] = f"Redis, {workers} worker{'s' if workers > 1 else ''}"
            redis = redis or ensure_redis_server()
            binary, note = redis
            if binary is None:
                label = f"mock-runbase, {results.shared[name]}"
                why = f"n/a: {note}"
                record_missing(name, label, why, results, STORE_WORKLOADS, paced=False)
            else:
                results.machine["redis-server"] = note
                targets.append(redis_target(binary, workers))
        else:
            raise SystemExit(f"bench: unknown target {name!r} (choose from {', '.join(TARGETS)})")
    return targets


def record_missing(
    name: str,
    label: str,
    why: str,
    results: Results,
    workloads: Sequence[str] = tuple(WORKLOADS),
    paced: bool = True,
) -> None:
    log(why)
    results.labels[name] = label
    results.notes.append(why)
    for workload in workloads:
        results.load.setdefault(workload, {})[name] = why
    if paced:
        results.fixed[name] = why


def describe(load: LoadSettings, args: argparse.Namespace, plan: Plan) -> dict[str, str]:
    counts = ", ".join(f"{n:,}" for n in plan.stored_runs)
    return {
        "wrk": f"{load.threads} thread, {load.connections} connections, {load.duration_s:g} s "
        f"per workload after {load.warmup_s:g} s warm-up",
        "servers": "loopback, one process each, output to a file each (bench/.cache/logs); "
        "uvicorn defaults (uvloop + httptools when installed); the mock at its default log "
        "level (a line per request), bare Starlette with --log-level warning, Prism -v warn",
        "mock": f"`{shown_command(mock_target('fast'))}`",
        "bare Starlette": f"`{shown_command(bare_target())}`",
        "fixed rate": f"{args.rate} requests/s held by wrk's Lua delay() (bench/lua/common.lua)",
        "rounds": f"{rounds_of(args)} of the closed-loop create, poll "
        "and mix of each single-process target (the median counts); one of everything else",
        "stored runs": f"{counts} (the mock's command, filled by wrk with create.lua)",
        "renders during polls": f"{plan.stall_renders} 4K PNGs and {plan.stall_renders} 1080p "
        "MP4s, each a fresh run's first GET",
        "redis": "the mock as above plus --store redis://127.0.0.1:P/0 (and --workers 2), on a "
        f"fresh `{shlex.join(redis_command('redis-server', 'P', 'TMP'))}` per target; create, "
        "poll and mix only",
    }


def shown_command(target: Target) -> str:
    """The target's command as a user would type it (the port as P)."""
    words = [Path(target.command[0]).name, *target.command[1:]]
    here = f"{REPO_DIR}/"  # the servers start in the repository
    return shlex.join(word.replace("{port}", "P").replace(here, "") for word in words)


def make_plan(args: argparse.Namespace, load: LoadSettings) -> Plan:
    quick = args.quick
    return Plan(
        load=load,
        rate=args.rate,
        repeats=1 if quick else args.repeats,
        stored_runs=args.stored_runs or (QUICK_STORED if quick else FULL_STORED),
        stall_renders=args.renders or (2 if quick else 3),
        rounds=rounds_of(args),
        profile_to=args.output / "profile-mix.folded" if args.profile else None,
        py_spy=ensure_py_spy() if args.profile else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    wrk = ensure_wrk()
    load = load_settings(args, wrk)
    plan = make_plan(args, load)
    results = Results(
        machine=machine_facts(wrk), settings=describe(load, args, plan), rate=args.rate
    )
    if args.quick and args.stored_runs is None:
        results.notes.append(
            f"--quick: the stored-runs phase stops at {QUICK_STORED[-1]:,} runs, not "
            f"{FULL_STORED[-1]:,}; RSS at {FULL_STORED[-1]:,} is extrapolated from it"
        )
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    targets = chosen_targets(names, results)
    if not results.shared:
        del results.settings["redis"]
    if "mock" in names:
        measure_startup(plan, results)
    for target in targets:
        bench_target(target, plan, results)
    more_rounds(targets, plan, results, rounds_of(args) - 1)
    if "mock" in names and not args.no_storage:
        measure_stored(plan, results)
    return write_outputs(results, args.output)


def rounds_of(args: argparse.Namespace) -> int:
    """``--rounds``, else 3 (1 with ``--quick``)."""
    return int(args.rounds or (1 if args.quick else 3))


def more_rounds(targets: list[Target], plan: Plan, results: Results, count: int) -> None:
    """``count`` more rounds of the closed-loop create, poll and mix of the single-process
    targets, then each figure is its round of median requests/s: the machine's speed drifts
    over tens of seconds, and one round takes each target at one moment of it."""
    single = [t for t in targets if not t.redis_server]
    if count < 1 or not single:
        return
    rounds = {t.name: [{w: results.outcome(w, t.name) for w in STORE_WORKLOADS}] for t in single}
    for number in range(count):
        shift = (number + 1) % len(single)
        for target in single[shift:] + single[:shift]:
            rounds[target.name].append(throughput_round(target, plan))
    for target in single:
        for workload in STORE_WORKLOADS:
            outcomes = [found[workload] for found in rounds[target.name]]
            results.load[workload][target.name] = median_round(outcomes)
            shown = shown_rounds(outcomes)
            results.rounds.append(f"{results.labels[target.name]}, {workload}: {shown}")


def write_outputs(results: Results, folder: Path) -> int:
    results.machine["load average at end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    folder.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results)
    (folder / "latest.md").write_text(markdown)
    if ensure_matplotlib():
        write_chart(results, folder / "latest.png")
    else:
        log("matplotlib unavailable: no chart")
    print(markdown)
    log(f"wrote {folder / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
