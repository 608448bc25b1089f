"""A/B: mock-runbase from several source trees (and bare Starlette), interleaved rounds.

For performance work on a noisy machine: each round starts every target in turn (the order
rotates between rounds), drives the chosen workloads with wrk and stops it, so slow drifts in
the machine's load hit every target alike. Prints one markdown table (median over the rounds,
with the spread, of requests/s and of the server's CPU time per request during each run, which
steal and wrk's share of the cores move far less) and the load average before and after::

    python bench/ab.py --tree before=/tmp/before --tree after=. --bare --rounds 5

A tree is a folder holding a ``mock_runbase`` package (and ``openapi.yaml`` beside it, as in a
checkout); it runs with ``python -P`` and ``PYTHONPATH=TREE``, so the installed package does not
shadow it. Nothing is written under ``bench/results``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadgen import LoadSettings, run_wrk
from suite import Plan, base_env, profile_mix
from targets import Target, bare_target, running, serve_args
from tools import ensure_py_spy, ensure_wrk, log, pinned

WORKLOADS = ("create", "poll", "mix")
CPU_COLUMN = "mix CPU us/request"
SATURATED_CPU = "us CPU"  # the server's CPU time per request of a workload run at full speed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--tree", action="append", default=[], help="NAME=DIR: a source tree to run (repeat)")
    add("--bare", action="store_true", help="also drive bare Starlette (the ceiling)")
    add("--rounds", type=int, default=3, help="rounds over all targets (3)")
    add("--workloads", default=",".join(WORKLOADS), help="which of create,poll,mix (all)")
    add("--duration", type=float, default=3.0, help="seconds per measured run (3)")
    add("--warmup", type=float, default=1.0, help="unmeasured seconds before each (1)")
    add("--connections", type=int, default=32, help="wrk connections (32)")
    add("--cpu-rate", type=int, help="also: server CPU us per request of the mix at this rate")
    add(
        "--pin",
        action="store_true",
        help="server on one core, wrk on the other, as bench/run.py measures (tools.pinned)",
    )
    add("--profile-dir", type=Path, help="after the rounds, py-spy each target under the mix")
    return parser


def tree_target(spec: str) -> Target:
    name, _, folder = spec.partition("=")
    if not name or not folder:
        raise SystemExit(f"ab: --tree wants NAME=DIR, got {spec!r}")
    root = Path(folder).resolve()
    if not (root / "mock_runbase").is_dir():
        raise SystemExit(f"ab: no mock_runbase package in {root}")
    command = [sys.executable, "-P", "-m", "mock_runbase", *serve_args("fast")]
    return Target(name, name, command, env={"PYTHONPATH": str(root)})


Round = dict[tuple[str, str], float]  # (target, column) -> value


def measure_round(targets: list[Target], load: LoadSettings, args: argparse.Namespace) -> Round:
    """Each target started in turn: requests/s of each workload, then (``--cpu-rate``) the
    server's CPU time per request of the mix held at a fixed rate."""
    found: Round = {}
    for target in targets:
        with running(target) as server, pinned(server.pid, wanted=args.pin):
            env = base_env(server)
            for workload in args.workloads:
                run_wrk(
                    load, server.base_url, workload, env, duration_s=load.warmup_s, warmup=False
                )
                before = cpu_seconds(server.pid)
                result = run_wrk(load, server.base_url, workload, env, warmup=False)
                cpu_us = (cpu_seconds(server.pid) - before) / max(1, result.requests) * 1e6
                log(
                    f"{target.label} {workload}: {result.rps:,.0f} req/s, "
                    f"{cpu_us:.1f} us CPU/request ({result.errors} errors)"
                )
                found[(target.label, workload)] = result.rps
                found[(target.label, f"{workload} {SATURATED_CPU}")] = cpu_us
            if args.cpu_rate:
                paced = {**env, "BENCH_RATE": str(args.cpu_rate)}
                cpu_us = cpu_per_request_us(server.pid, load, server.base_url, paced)
                log(f"{target.label} mix CPU: {cpu_us:.1f} us/request")
                found[(target.label, CPU_COLUMN)] = cpu_us
    return found


def cpu_per_request_us(pid: int, load: LoadSettings, url: str, env: dict[str, str]) -> float:
    """The server's CPU time (user + system) per answered request while wrk paces the mix."""
    before = cpu_seconds(pid)
    result = run_wrk(load, url, "mix", env, warmup=False)
    return (cpu_seconds(pid) - before) / max(1, result.requests) * 1e6


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def profile_trees(targets: list[Target], load: LoadSettings, folder: Path) -> None:
    """``folder/profile-NAME.folded`` and ``.txt``: each target's stacks under the mix."""
    py_spy = ensure_py_spy()
    if py_spy is None:
        raise SystemExit("ab: --profile-dir needs py-spy (pip install py-spy)")
    plan = Plan(
        load, rate=0, repeats=1, stored_runs=(), stall_renders=0, profile_to=None, py_spy=py_spy
    )
    for target in targets:
        with running(target) as server:
            out = folder / f"profile-{target.name}.folded"
            profile_mix(server, plan, base_env(server), out, py_spy)


def rotated(items: list[Target], by: int) -> list[Target]:
    by %= len(items)
    return items[by:] + items[:by]


def table(rounds: list[Round], labels: list[str], columns: list[str]) -> str:
    """Median over the rounds, each round's value in brackets."""
    lines = [f"| target | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for label in labels:
        cells = []
        for column in columns:
            values = [found[(label, column)] for found in rounds]
            each = " / ".join(number(v) for v in values)
            cells.append(f"**{number(statistics.median(values))}** ({each})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"ab: unknown workloads {sorted(unknown)}")
    targets = [tree_target(spec) for spec in args.tree] + ([bare_target()] if args.bare else [])
    if not targets:
        raise SystemExit("ab: give at least one --tree NAME=DIR or --bare")
    load = LoadSettings(ensure_wrk(), 1, args.connections, args.duration, args.warmup)
    before = load_average()
    started = time.perf_counter()
    rounds = [measure_round(rotated(targets, n), load, args) for n in range(args.rounds)]
    if args.profile_dir:
        profile_trees(targets, load, args.profile_dir)
    if rounds:
        saturated = [f"{workload} {SATURATED_CPU}" for workload in args.workloads]
        columns = [*args.workloads, *saturated, *([CPU_COLUMN] if args.cpu_rate else [])]
        print(table(rounds, [t.label for t in targets], columns))
    paced = f"; CPU at {args.cpu_rate} requests/s of the mix" if args.cpu_rate else ""
    print(
        f"\nload average (1, 5, 15 min) before: {before}; after: {load_average()}; "
        f"{args.rounds} rounds in {time.perf_counter() - started:.0f} s; "
        f"wrk 1 thread, {args.connections} connections, {args.duration:g} s runs "
        f"after {args.warmup:g} s warm-up{paced}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
