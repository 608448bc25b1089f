"""Many runs stored: a mock filled through the public API, then its RSS and tails at each count."""

from __future__ import annotations

import time

from plan import MIX, WORKLOADS, Plan, base_env, guarded, median_round, record_log_size
from probes import fill_runs, rss_mb, stored_runs
from results_model import Results, StoredLevel
from targets import Server, StartFailed, mock_target, running
from tools import log, pinned

__all__ = ["STORED_WORKLOADS", "measure_stored"]

STORED_WORKLOADS = ("poll", MIX, "create")  # creates last: they add runs while measured


def measure_stored(plan: Plan, results: Results) -> None:
    """One mock (the same command as the ``mock`` target), filled to each of
    ``plan.stored_runs`` in turn; its RSS before any run is stored."""
    target = mock_target("fast", "mock-runbase (stored runs)", name="stored")
    try:
        with running(target) as server:
            results.rss_start_mb = rss_mb(server.pid)
            env = base_env(server)
            for wanted in plan.stored_runs:
                results.stored.append(stored_level(server, plan, env, wanted))
            record_log_size(server, results)
    except StartFailed as failure:
        results.notes.append(f"stored-runs phase: the mock did not start ({failure})")


def stored_level(server: Server, plan: Plan, env: dict[str, str], wanted: int) -> StoredLevel:
    before = stored_runs(server)
    log(f"stored runs: creating {max(0, wanted - before):,} runs (wrk, create.lua)")
    started = time.perf_counter()
    held = fill_runs(server, plan.load, wanted)
    fill_s = time.perf_counter() - started
    log(f"stored runs: {held:,} held after {fill_s:.1f} s ({(held - before) / fill_s:,.0f}/s)")
    time.sleep(0.5)  # the last requests' garbage collected, as in a server at rest
    rss = rss_mb(server.pid)
    rounds = {}
    with pinned(server.pid):  # as the targets' workloads are measured
        for workload in STORED_WORKLOADS:
            log(f"stored runs: {workload} with {stored_runs(server):,} stored")
            # no warm-up: the fill has just driven this server for longer than any warm-up;
            # rounds back to back, the median kept, as the machine's speed drifts
            rounds[workload] = [
                guarded(plan, server, WORKLOADS[workload][0], env, warmup=False)
                for _ in range(plan.rounds)
            ]
    return StoredLevel(
        wanted=wanted,
        held=held,
        held_after=stored_runs(server),
        filled=held - before,
        fill_s=fill_s,
        rss_mb=rss,
        load={workload: median_round(outcomes) for workload, outcomes in rounds.items()},
        rounds=rounds,
    )
