"""What the phases share: the plan of a run, the workloads, and a guarded wrk run."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen import LoadSettings, WrkResult, run_wrk, write_ids
from probes import body_for, create_runs, log_size
from results_model import Outcome, Results
from targets import Server
from tools import CACHE_DIR, log

__all__ = [
    "MIX",
    "POLL_RUNS",
    "STORE_WORKLOADS",
    "WORKLOADS",
    "Plan",
    "base_env",
    "guarded",
    "record_log_size",
]

POLL_RUNS = 200
WORKLOADS = {  # name in the report -> (lua script, image size for image workloads)
    "create": ("create", None),
    "poll": ("poll", None),
    "mix 1:10": ("mix", None),
    "image 1K": ("image", "1k"),
    "image 4K": ("image", "4k"),
}
MIX = "mix 1:10"
STORE_WORKLOADS = ("create", "poll", MIX)  # the shared-store targets' and the tails' workloads


@dataclass(frozen=True)
class Plan:
    load: LoadSettings
    rate: int
    repeats: int  # of first renders and of starts
    stored_runs: tuple[int, ...]  # the counts of the stored-runs phase, fewest first
    stall_renders: int  # renders of each kind (4K PNG, 1080p MP4) during the stall test
    rounds: int  # of each closed-loop workload measured (targets' and stored runs'), median kept
    profile_to: Path | None  # py-spy's folded stacks of the mock under the mix, if wanted
    py_spy: str | None


def median_round(outcomes: list[Outcome]) -> Outcome:
    """The round of median requests/s among those measured (the first outcome if none was)."""
    measured = sorted(
        (o for o in outcomes if isinstance(o, WrkResult) and o.requests), key=lambda o: o.rps
    )
    return measured[(len(measured) - 1) // 2] if measured else outcomes[0]


def shown_rounds(outcomes: list[Outcome]) -> str:
    return " / ".join(f"{o.rps:,.0f}" if isinstance(o, WrkResult) else "n/a" for o in outcomes)


def base_env(server: Server) -> dict[str, str]:
    """The scripts' environment: the API prefix and a file of runs to poll (succeeded)."""
    ids = create_runs(server, POLL_RUNS, body_for("1k"))
    time.sleep(0.3)  # past the fast profile's ~50 ms: the polled runs have succeeded
    ids_file = write_ids(CACHE_DIR / f"ids-{server.target.name}.txt", ids)
    return {"BENCH_PREFIX": server.target.prefix, "BENCH_IDS": ids_file}


def guarded(
    plan: Plan, server: Server, script: str, env: dict[str, str], *, warmup: bool = True
) -> Outcome:
    """A wrk run, or "n/a: why" when wrk printed no result (the run goes on)."""
    try:
        return run_wrk(plan.load, server.base_url, script, env, warmup=warmup)
    except (RuntimeError, subprocess.TimeoutExpired) as problem:
        log(f"{server.target.label}: {script}: {problem}")
        return f"n/a: {problem}"


def record_log_size(server: Server, results: Results) -> None:
    """How much the server logged (to a file: per-request lines never wait on a reader)."""
    size, lines = log_size(server.log_path)
    note = f"{server.log_path.name}: {lines:,} lines"
    label = f"{server.target.label}: output logged"
    results.add(f"log_{server.target.name}", label, size / 1e6, "MB", note)
