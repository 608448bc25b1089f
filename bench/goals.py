"""The targets of issue 16 and before: what is wanted, how it is measured, met or missed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from loadgen import WrkResult
from plan import MIX, STORE_WORKLOADS
from results_model import Outcome, Results, StoredLevel

__all__ = [
    "MEMORY_RUNS",
    "Goal",
    "goal_rows",
    "memory_at",
    "ms",
    "p99_ratio",
    "rss_per_run_kb",
]

Measure = Callable[[Results], tuple[float | None, str]]  # (value, as shown)
MEMORY_RUNS = 1_000_000  # "1M stored runs fit in < 1 GB"
TAIL_FACTOR = 2.0  # p99 at most this times bare Starlette's


@dataclass(frozen=True)
class Goal:
    name: str
    wanted: str
    measure: Measure
    passes: Callable[[float], bool]


def ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def rps_ratio(results: Results, workload: str, mine: str, other: str) -> float | None:
    ours, theirs = results.rps(workload, mine), results.rps(workload, other)
    return ours / theirs if ours and theirs else None


def throughput(workload: str, mine: str, other: str, percent: bool = True) -> Measure:
    def measure(results: Results) -> tuple[float | None, str]:
        value = rps_ratio(results, workload, mine, other)
        if value is None:
            return None, "n/a"
        return value, f"{value:.0%}" if percent else f"{value:.2f}x"

    return measure


def p99_ratio(found: Outcome, base: Outcome) -> float | None:
    if isinstance(found, WrkResult) and isinstance(base, WrkResult) and base.p99_ms:
        return found.p99_ms / base.p99_ms
    return None


def tails(loads: Callable[[Results], dict[str, Outcome] | None]) -> Measure:
    """The worst of create, poll and mix: the mock's p99 over bare Starlette's."""

    def measure(results: Results) -> tuple[float | None, str]:
        found = loads(results)
        if found is None:
            return None, "n/a"
        ratios = {
            w: p99_ratio(found.get(w, "not run"), results.outcome(w, "bare"))
            for w in STORE_WORKLOADS
        }
        known = [r for r in ratios.values() if r is not None]
        if not known:
            return None, "n/a"
        shown = "; ".join(f"{w} {'n/a' if r is None else f'{r:.1f}x'}" for w, r in ratios.items())
        return max(known) if len(known) == len(ratios) else math.inf, shown

    return measure


def main_loads(results: Results) -> dict[str, Outcome]:
    return {w: results.outcome(w, "mock") for w in STORE_WORKLOADS}


def level_loads(index: int) -> Callable[[Results], dict[str, Outcome] | None]:
    def loads(results: Results) -> dict[str, Outcome] | None:
        level = stored_level(results, index)
        return level.load if level else None

    return loads


def stored_level(results: Results, index: int) -> StoredLevel | None:
    levels = results.stored
    return levels[index] if -len(levels) <= index < len(levels) else None


def paced_p99(results: Results) -> tuple[float | None, str]:
    paced = results.fixed.get("mock")
    if not isinstance(paced, WrkResult):
        return None, "n/a"
    held = paced.rps >= 0.95 * results.rate
    shown = f"{paced.p99_ms:.2f} ms at {paced.rps:.0f} requests/s"
    return (paced.p99_ms if held else math.inf), shown + ("" if held else " (rate not held)")


def probe(key: str, unit: str) -> Measure:
    def measure(results: Results) -> tuple[float | None, str]:
        value = results.value(key)
        return value, "n/a" if value is None else f"{value:.2f} {unit}"

    return measure


def cached_image(results: Results) -> tuple[float | None, str]:
    p50, p99 = results.value("cached_4k_p50"), results.value("cached_4k_p99")
    small = results.value("cached_1k_p50")
    if p50 is None:
        return None, "n/a"
    return p50, f"4K p50 {ms(p50)} ms (p99 {ms(p99)}); 1K p50 {ms(small)} ms"


def render_stall(results: Results) -> tuple[float | None, str]:
    """Polls' p99 while rendering over the p99 with nothing rendering; infinite if a poll
    waited as long as the quickest render (the event loop held by a render)."""
    stall = results.stall
    if stall is None or not stall.renders:
        return None, "n/a"
    idle, busy = stall.idle, stall.rendering
    value = p99_ratio(busy, idle)
    if value is None or not isinstance(busy, WrkResult) or not isinstance(idle, WrkResult):
        return None, "n/a"
    quickest = min((r.took_s for r in stall.renders if not math.isnan(r.took_s)), default=math.nan)
    shown = (
        f"p99 {ms(busy.p99_ms)} ms while rendering vs {ms(idle.p99_ms)} ms ({value:.1f}x); "
        f"max {ms(busy.max_ms)} ms, quickest render {quickest * 1000:.0f} ms"
    )
    stalled = math.isnan(quickest) or busy.max_ms >= quickest * 1000
    return (math.inf if stalled else value), shown


def rss_per_run_kb(results: Results) -> float | None:
    """(RSS at the most runs stored - RSS before any) / runs held then, in KB."""
    level = stored_level(results, -1)
    if level is None or results.rss_start_mb is None or not level.held:
        return None
    return (level.rss_mb - results.rss_start_mb) * 1024 / level.held


def memory_at(results: Results, runs: int) -> tuple[float | None, bool]:
    """(RSS in MB with ``runs`` stored, measured?): extrapolated from the largest count
    stored when that is short of ``runs``."""
    level, per_run = stored_level(results, -1), rss_per_run_kb(results)
    if level is None or per_run is None or results.rss_start_mb is None:
        return None, False
    if level.held >= runs:
        return level.rss_mb, True
    return results.rss_start_mb + per_run * runs / 1024, False


def memory(results: Results) -> tuple[float | None, str]:
    value, measured = memory_at(results, MEMORY_RUNS)
    per_run = rss_per_run_kb(results)
    level = stored_level(results, -1)
    if value is None or per_run is None or level is None:
        return None, "n/a"
    how = "measured" if measured else f"extrapolated from {level.held:,} runs"
    return value, f"{value:,.0f} MB ({how}; {per_run * 1024:,.0f} bytes a run)"


def flat_polls(results: Results) -> tuple[float | None, str]:
    few, most = stored_level(results, 0), stored_level(results, -1)
    if few is None or most is None or few is most:
        return None, "n/a"
    small, big = few.load.get("poll"), most.load.get("poll")
    if not isinstance(small, WrkResult) or not isinstance(big, WrkResult) or not small.p50_ms:
        return None, "n/a"
    growth = big.p50_ms / small.p50_ms
    shown = (
        f"p50 {ms(small.p50_ms)} ms at {few.held:,} -> {ms(big.p50_ms)} ms at {most.held:,} "
        f"runs ({growth:.2f}x)"
    )
    return growth, shown


def level_name(results: Results, index: int, fallback: str) -> str:
    level = stored_level(results, index)
    return f"{level.wanted:,}" if level else fallback


def within_factor(value: float) -> bool:
    return value <= TAIL_FACTOR


def goals(results: Results) -> list[Goal]:
    few, most = level_name(results, 0, "10,000"), level_name(results, -1, "1,000,000")
    tail = f"<= {TAIL_FACTOR:g}x bare's, worst of create, poll, mix"
    return [
        Goal(
            "mixed workload vs Prism",
            ">= 3x Prism's requests/s",
            throughput(MIX, "mock", "prism", False),
            lambda v: v >= 3,
        ),
        Goal(
            "mixed workload vs bare Starlette",
            ">= 70% of its requests/s",
            throughput(MIX, "mock", "bare"),
            lambda v: v >= 0.7,
        ),
        Goal(
            "creates vs bare Starlette",
            ">= 60% of its requests/s",
            throughput("create", "mock", "bare"),
            lambda v: v >= 0.6,
        ),
        Goal("p99, closed loop", tail, tails(main_loads), within_factor),
        Goal(f"p99 with {few} runs stored", tail, tails(level_loads(0)), within_factor),
        Goal(f"p99 with {most} runs stored", tail, tails(level_loads(-1)), within_factor),
        Goal(f"mix p99 at a fixed {results.rate} requests/s", "< 5 ms", paced_p99, lambda v: v < 5),
        Goal(
            "first render of a 4K PNG (HTTP)",
            "< 150 ms",
            probe("first_4k", "ms"),
            lambda v: v < 150,
        ),
        Goal("cached image GET (one connection)", "p50 < 2 ms", cached_image, lambda v: v < 2),
        Goal(
            "a render never stalls other requests",
            f"polls' p99 while rendering <= {TAIL_FACTOR:g}x idle's; no poll as slow as a render",
            render_stall,
            within_factor,
        ),
        Goal("process start to healthy", "< 1 s", probe("healthy", "s"), lambda v: v < 1),
        Goal(f"{MEMORY_RUNS:,} stored runs fit", "< 1 GB RSS", memory, lambda v: v < 1024),
        Goal(
            f"poll latency, {few} vs {most} runs",
            "flat (p50 within 1.25x)",
            flat_polls,
            lambda v: v <= 1.25,
        ),
        Goal(
            "Redis, 1 worker: mix vs in-memory",
            ">= 40% of its requests/s",
            throughput(MIX, "redis1", "mock"),
            lambda v: v >= 0.4,
        ),
        Goal(
            "Redis: 2 workers vs 1 (mix)",
            "faster (> 1x)",
            throughput(MIX, "redis2", "redis1", False),
            lambda v: v > 1,
        ),
    ]


def goal_rows(results: Results) -> list[list[str]]:
    rows = []
    for goal in goals(results):
        value, shown = goal.measure(results)
        verdict = "n/a" if value is None else ("met" if goal.passes(value) else "**missed**")
        rows.append([goal.name, goal.wanted, shown, verdict])
    return rows
