"""Instructions per request of the mock's ASGI app, counted by valgrind: the steadiest measure.

On a shared 2-core machine wrk's requests/s move by 10-30% between rounds of the same build,
and even ``asgi_cost.py``'s CPU time by 10%. valgrind counts the instructions the process
executes (``cachegrind``, no cache simulation), which do not depend on the machine's load: two
runs of the same build agree within about 1%. It counts user space only (not the kernel's
share of a request: writes, reads, wakeups), and an instruction saved is not always time saved,
so wrk (``ab.py``) still has the last word::

    python bench/instructions.py                       # create, poll, mix of this checkout
    python bench/instructions.py --tree before=/tmp/before --tree after=.
    python bench/instructions.py --bare                # bench/bare_app.py: the stack's own

Each count is the difference between two runs of ``asgi_cost.py``'s workloads in one process
(after a warm-up), with ``--requests`` and with none: start-up cancels out. valgrind is
installed with apt-get when missing. Nothing is written under ``bench/results``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import asgi_cost
from tools import BENCH_DIR, REPO_DIR, apt_required, log

WORKLOADS = tuple(asgi_cost.REQUESTS_PER_UNIT)  # create, poll, mix: asgi_cost.py's workloads
WARMUP_UNITS = 200
TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--tree", action="append", default=[], help="NAME=DIR: a source tree to count (repeat)")
    add("--bare", action="store_true", help="also count bench/bare_app.py (the ceiling)")
    add("--workloads", default=",".join(WORKLOADS), help="which of create,poll,mix (all)")
    add("--requests", type=int, default=3000, help="requests counted per workload (3000)")
    add("--unit", nargs=2, metavar=("WORKLOAD", "COUNT"), help=argparse.SUPPRESS)
    return parser


def run_units(workload: str, count: int) -> None:
    """Inside valgrind: the app (bare with BENCH_BARE), a warm-up, then ``count`` units."""

    async def drive() -> None:
        app = asgi_cost.the_app(bool(os.environ.get("BENCH_BARE")), "memory")
        unit = (await asgi_cost.workloads(app))[workload]
        for _ in range(WARMUP_UNITS + count):
            await unit()

    asyncio.run(drive())


def counted(tree: Path | None, workload: str, units: int, valgrind: str) -> int:
    """valgrind's instruction total for one run of ``units`` units of ``workload``."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(BENCH_DIR)}
    if tree is None:
        env["BENCH_BARE"] = "1"
    else:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{BENCH_DIR}"
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-P",
        str(Path(__file__).resolve()),
        "--unit",
        workload,
        str(units),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    found = TOTAL.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"instructions: valgrind failed: {done.stderr[-600:]}")
    return int(found[1].replace(",", ""))


def per_request(tree: Path | None, workload: str, requests: int, valgrind: str) -> int:
    per_unit = asgi_cost.REQUESTS_PER_UNIT[workload]
    units = max(1, requests // per_unit)
    total = counted(tree, workload, units, valgrind) - counted(tree, workload, 0, valgrind)
    return round(total / (units * per_unit))


def trees(specs: list[str], bare: bool) -> list[tuple[str, Path | None]]:
    found: list[tuple[str, Path | None]] = []
    for spec in specs or [f"this checkout={REPO_DIR}"]:
        name, _, folder = spec.partition("=")
        root = Path(folder).resolve()
        if not name or not folder or not (root / "mock_runbase").is_dir():
            raise SystemExit(
                f"instructions: --tree wants NAME=DIR with mock_runbase/, got {spec!r}"
            )
        found.append((name, root))
    return found + ([("bare Starlette", None)] if bare else [])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.unit:
        run_units(args.unit[0], int(args.unit[1]))
        return 0
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown or args.requests < 1:
        raise SystemExit(f"instructions: unknown workloads {sorted(unknown)} or --requests < 1")
    targets = trees(args.tree, args.bare)
    valgrind = apt_required("valgrind", "valgrind", "instructions")
    lines = [f"| target | {' | '.join(workloads)} |", "|---|" + "---|" * len(workloads)]
    for name, tree in targets:
        cells = []
        for workload in workloads:
            count = per_request(tree, workload, args.requests, valgrind)
            log(f"{name} {workload}: {count:,} instructions a request")
            cells.append(f"{count:,}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(f"\ninstructions a request (valgrind, user space), {args.requests} requests each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
