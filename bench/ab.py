"""A/B: mock-runbase from several source trees (and bare Starlette), interleaved rounds.

For performance work on a noisy machine: each round starts every target in turn (the order
rotates between rounds), drives the chosen workloads with wrk and stops it, so slow drifts in
the machine's load hit every target alike. Prints one markdown table (median over the rounds,
with the spread, of requests/s and of the server's CPU time per request during each run, which
steal and wrk's share of the cores move far less) and the load average before and after::

    python bench/ab.py --tree before=/tmp/before --tree after=. --bare --rounds 5

A tree is a folder holding a ``mock_runbase`` package (and ``openapi.yaml`` beside it, as in a
checkout); it runs with ``python -P`` and ``PYTHONPATH=TREE``, so the installed package does not
shadow it. ``--redis`` also runs each tree on a redis-server of its own (one worker; its CPU
figures add the redis-server's), ``--syscalls`` counts the server's writes and reads per request
(perf). Nothing is written under ``bench/results``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from loadgen import LoadSettings, run_wrk
from plan import Plan, base_env
from suite import profile_mix
from targets import Server, Target, bare_target, running, serve_args
from tools import (
    apt_required,
    ensure_py_spy,
    ensure_redis_server,
    ensure_wrk,
    log,
    pinned,
    positive,
    positive_seconds,
    seconds,
)

WORKLOADS = ("create", "poll", "mix")
CPU_COLUMN = "mix CPU us/request"
SATURATED_CPU = "us CPU"  # the server's CPU time per request of a workload run at full speed
WRITES, READS = "writes", "reads"  # the server's system calls per request (--syscalls)
# perf's tracepoints of the system calls that write or read (sockets, and the request log's
# stdout), whichever the event loop uses (uvloop writes and reads; asyncio's selector loop sends
# and receives)
SYSCALLS = {
    WRITES: ("write", "writev", "sendto", "sendmsg"),
    READS: ("read", "readv", "recvfrom", "recvmsg"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--tree", action="append", default=[], help="NAME=DIR: a source tree to run (repeat)")
    add("--bare", action="store_true", help="also drive bare Starlette (the ceiling)")
    add("--rounds", type=positive, default=3, help="rounds over all targets (3)")
    add("--workloads", default=",".join(WORKLOADS), help="which of create,poll,mix (all)")
    add("--duration", type=positive_seconds, default=3.0, help="seconds per measured run (3)")
    add("--warmup", type=seconds, default=1.0, help="unmeasured seconds before each (1)")
    add("--connections", type=positive, default=32, help="wrk connections (32)")
    add("--cpu-rate", type=positive, help="also: server CPU us per request of the mix at this rate")
    add(
        "--pin",
        action="store_true",
        help="server on one core, wrk on the other, as bench/run.py measures (tools.pinned)",
    )
    add("--profile-dir", type=Path, help="after the rounds, py-spy each target under the mix")
    add("--redis", action="store_true", help="also run each tree on a redis-server of its own")
    add("--syscalls", action="store_true", help="also count writes and reads per request (perf)")
    return parser


def tree_target(spec: str, redis_server: str | None = None) -> Target:
    """The mock from the tree ``NAME=DIR``; on a redis-server of its own if one is given."""
    name, _, folder = spec.partition("=")
    if not name or not folder:
        raise SystemExit(f"ab: --tree wants NAME=DIR, got {spec!r}")
    root = Path(folder).resolve()
    if not (root / "mock_runbase").is_dir():
        raise SystemExit(f"ab: no mock_runbase package in {root}")
    command = [sys.executable, "-P", "-m", "mock_runbase", *serve_args("fast")]
    env = {"PYTHONPATH": str(root)}
    if redis_server is None:
        return Target(name, name, command, env=env)
    store = ["--store", "{redis}"]
    label = f"{name}, Redis"
    return Target(f"{name}-redis", label, [*command, *store], env=env, redis_server=redis_server)


Round = dict[tuple[str, str], float]  # (target, column) -> value


def measure_round(targets: list[Target], load: LoadSettings, args: argparse.Namespace) -> Round:
    """Each target started in turn: requests/s of each workload, then (``--cpu-rate``) the
    server's CPU time per request of the mix held at a fixed rate."""
    found: Round = {}
    for target in targets:
        with running(target) as server, pinned(server.pid, wanted=args.pin):
            env = base_env(server)
            for workload in args.workloads:
                if load.warmup_s > 0:
                    run_wrk(
                        load, server.base_url, workload, env, duration_s=load.warmup_s, warmup=False
                    )
                before = cpu_seconds(server)
                with counted_syscalls(server.pid, wanted=args.syscalls) as calls:
                    result = run_wrk(load, server.base_url, workload, env, warmup=False)
                requests = max(1, result.requests)
                cpu_us = (cpu_seconds(server) - before) / requests * 1e6
                log(
                    f"{target.label} {workload}: {result.rps:,.0f} req/s, "
                    f"{cpu_us:.1f} us CPU/request ({result.errors} errors)"
                )
                found[(target.label, workload)] = result.rps
                found[(target.label, f"{workload} {SATURATED_CPU}")] = cpu_us
                for kind, count in calls.items():
                    found[(target.label, f"{workload} {kind}")] = count / requests
            if args.cpu_rate:
                paced = {**env, "BENCH_RATE": str(args.cpu_rate)}
                cpu_us = cpu_per_request_us(server, load, server.base_url, paced)
                log(f"{target.label} mix CPU: {cpu_us:.1f} us/request")
                found[(target.label, CPU_COLUMN)] = cpu_us
    return found


def cpu_per_request_us(server: Server, load: LoadSettings, url: str, env: dict[str, str]) -> float:
    """The server's CPU time (user + system) per answered request while wrk paces the mix."""
    before = cpu_seconds(server)
    result = run_wrk(load, url, "mix", env, warmup=False)
    return (cpu_seconds(server) - before) / max(1, result.requests) * 1e6


def cpu_seconds(server: Server) -> float:
    """CPU time of the server process and of its own redis-server, if it has one."""
    pids = [server.pid, *([server.store_pid] if server.store_pid else [])]
    return sum(process_cpu_seconds(pid) for pid in pids)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@contextmanager
def counted_syscalls(pid: int, wanted: bool) -> Iterator[dict[str, int]]:
    """While the block runs, ``perf stat`` counts the process's write and read calls; the
    dict yielded is filled with the totals when it ends (left empty if not ``wanted``)."""
    counts: dict[str, int] = {}
    if not wanted:
        yield counts
        return
    events = [f"syscalls:sys_enter_{call}" for calls in SYSCALLS.values() for call in calls]
    command = [perf_path(), "stat", "-x", ",", "-e", ",".join(events), "-p", str(pid)]
    perf = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)  # perf attaches before the load starts
    try:
        yield counts
    finally:
        perf.send_signal(signal.SIGINT)
        _, report = perf.communicate(timeout=30)
    per_call = parse_perf_stat(report)
    if not per_call:
        raise SystemExit(f"ab: perf stat counted nothing: {report.strip()[-300:]}")
    for kind, calls in SYSCALLS.items():
        counts[kind] = sum(per_call.get(call, 0) for call in calls)


def parse_perf_stat(report: str) -> dict[str, int]:
    """``{"write": 123, ...}`` from ``perf stat -x ,`` lines (``COUNT,,EVENT,...``)."""
    found: dict[str, int] = {}
    for line in report.splitlines():
        count, _, rest = line.partition(",")
        event = rest.partition(",")[2].partition(",")[0]
        if count.isdigit() and event.startswith("syscalls:sys_enter_"):
            found[event.removeprefix("syscalls:sys_enter_")] = int(count)
    return found


def perf_path() -> str:
    return apt_required("linux-perf", "perf", "ab --syscalls")


def profile_trees(targets: list[Target], load: LoadSettings, folder: Path) -> None:
    """``folder/profile-NAME.folded`` and ``.txt``: each target's stacks under the mix."""
    py_spy = ensure_py_spy()
    if py_spy is None:
        raise SystemExit("ab: --profile-dir needs py-spy (pip install py-spy)")
    plan = Plan(
        load,
        rate=0,
        repeats=1,
        stored_runs=(),
        stall_renders=0,
        rounds=1,
        profile_to=None,
        py_spy=py_spy,
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
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"ab: unknown workloads {sorted(unknown)}")
    targets = [tree_target(spec) for spec in args.tree]
    if args.redis:
        binary, note = ensure_redis_server()
        if binary is None:
            raise SystemExit(f"ab: --redis needs redis-server: {note}")
        targets += [tree_target(spec, binary) for spec in args.tree]
    targets += [bare_target()] if args.bare else []
    if not targets:
        raise SystemExit("ab: give at least one --tree NAME=DIR or --bare")
    if args.syscalls:
        perf_path()  # missing perf fails now, not after the first round
    load = LoadSettings(ensure_wrk(), 1, args.connections, args.duration, args.warmup)
    before = load_average()
    started = time.perf_counter()
    rounds = [measure_round(rotated(targets, n), load, args) for n in range(args.rounds)]
    if args.profile_dir:
        profile_trees(targets, load, args.profile_dir)
    if rounds:
        saturated = [f"{workload} {SATURATED_CPU}" for workload in args.workloads]
        calls = (
            [f"{w} {kind}" for w in args.workloads for kind in SYSCALLS] if args.syscalls else []
        )
        columns = [*args.workloads, *saturated, *calls, *([CPU_COLUMN] if args.cpu_rate else [])]
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
