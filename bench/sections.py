"""Markdown tables of the report: the helpers, and the sections of tails, stored runs and media."""

from __future__ import annotations

import math

from goals import MEMORY_RUNS, memory_at, ms, p99_ratio, rss_per_run_kb
from loadgen import WrkResult
from media import MEDIA
from plan import STORE_WORKLOADS, shown_rounds
from results_model import Outcome, Results

__all__ = [
    "main_labels",
    "media_section",
    "outcome_cells",
    "stall_section",
    "store_servers",
    "stored_section",
    "table",
    "tail_columns",
    "tails_section",
]

IN_MEMORY = "in-memory, 1 worker"  # the "mock" target, as named in the shared-store section


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def outcome_cells(found: Outcome) -> list[str]:
    if isinstance(found, WrkResult):
        errors = str(found.errors) if found.errors else "0"
        return [f"{found.rps:,.0f}", ms(found.p50_ms), ms(found.p99_ms), errors]
    return [found, "", "", ""]


def main_labels(results: Results) -> dict[str, str]:
    """The targets of the main comparison (mock, Prism, bare): all but the shared-store ones."""
    return {name: label for name, label in results.labels.items() if name not in results.shared}


def store_servers(results: Results) -> dict[str, str]:
    """The in-memory mock, then the shared-store targets: name -> label in that section."""
    return {"mock": IN_MEMORY, **results.shared}


def p99_cell(found: Outcome, base: Outcome) -> str:
    if not isinstance(found, WrkResult):
        return "n/a"
    versus = p99_ratio(found, base)
    return ms(found.p99_ms) + ("" if versus is None else f" ({versus:.1f}x)")


def tail_columns(results: Results) -> dict[str, dict[str, Outcome]]:
    """Column title -> workload -> the mock's result: the main run, then each stored count."""
    columns = {"mock": {w: results.outcome(w, "mock") for w in STORE_WORKLOADS}}
    for level in results.stored:
        columns[f"mock, {level.held:,} stored"] = level.load
    return columns


def tails_section(results: Results) -> list[str]:
    """The mock's p99 next to bare Starlette's, closed loop, and with many runs stored."""
    if "mock" not in results.labels and not results.stored:
        return []
    columns = tail_columns(results)
    rows = []
    for workload in STORE_WORKLOADS:
        bare = results.outcome(workload, "bare")
        cells = [p99_cell(found.get(workload, "not run"), bare) for found in columns.values()]
        bare_p99 = ms(bare.p99_ms) if isinstance(bare, WrkResult) else "n/a"
        rows.append([workload, bare_p99, *cells])
    header = ["workload", "bare Starlette p99 ms", *(f"{title} p99 ms" for title in columns)]
    return [
        "## Tails: p99 against bare Starlette (closed loop)",
        "",
        "In brackets: over bare Starlette's p99 in the same workload (wanted: at most 2x).",
        "",
        *table(header, rows),
        "",
    ]


def stored_section(results: Results) -> list[str]:
    """The stored-runs mock: how long each fill took, its RSS, and its workloads then."""
    if not results.stored:
        return []
    rows = []
    for level in results.stored:
        poll, mix, create = (level.load.get(w, "not run") for w in ("poll", "mix 1:10", "create"))
        rows.append(
            [
                f"{level.held:,}",
                f"{level.filled:,} in {level.fill_s:.1f} s ({level.fill_rate:,.0f}/s)",
                f"{level.rss_mb:,.0f}",
                *(latencies(found) for found in (poll, mix, create)),
                f"{level.held_after:,}",
            ]
        )
    header = [
        "runs stored",
        "fill (wrk, create.lua)",
        "RSS MB",
        "poll req/s, p50 / p99 ms",
        "mix req/s, p50 / p99 ms",
        "create req/s, p50 / p99 ms",
        "runs after",
    ]
    rounds = [
        f"- {level.held:,} stored, {workload}: {shown_rounds(outcomes)}"
        for level in results.stored
        for workload, outcomes in level.rounds.items()
        if len(outcomes) > 1
    ]
    return [
        "## Stored runs",
        "",
        "One mock (the `mock` command), filled through `POST /v1/runs` by wrk to each count in "
        "turn; RSS right after the fill; then poll, mix and create (creates last: they add "
        "runs), each in as many rounds back to back as the targets' closed-loop workloads, the "
        "round of median requests/s shown.",
        "",
        *table(header, rows),
        "",
        *([*rounds, ""] if rounds else []),
        *memory_lines(results),
    ]


def latencies(found: Outcome) -> str:
    if not isinstance(found, WrkResult):
        return found
    return f"{found.rps:,.0f}, {ms(found.p50_ms)} / {ms(found.p99_ms)}"


def memory_lines(results: Results) -> list[str]:
    per_run, (at_target, measured) = rss_per_run_kb(results), memory_at(results, MEMORY_RUNS)
    if per_run is None or at_target is None or results.rss_start_mb is None:
        return []
    how = "measured" if measured else "extrapolated"
    return [
        f"Memory: RSS {results.rss_start_mb:,.0f} MB before any run was stored; "
        f"{per_run * 1024:,.0f} bytes a stored run (RSS at the most runs minus RSS at start, "
        f"over the runs); {at_target:,.0f} MB with {MEMORY_RUNS:,} runs ({how}).",
        "",
    ]


def media_section(results: Results) -> list[str]:
    """First render (a fresh run's first GET) and cached serves, per kind of file."""
    rows = []
    for key, label in MEDIA.items():
        first, second = results.probes.get(f"first_{key}"), results.probes.get(f"second_{key}")
        if first is None:
            continue
        p50, p99 = results.value(f"cached_{key}_p50"), results.value(f"cached_{key}_p99")
        second_ms = ms(second.value) if second else "n/a"
        rows.append([label, ms(first.value), first.note, second_ms, ms(p50), ms(p99)])
    if not rows:
        return []
    header = [
        "file",
        "first GET ms (renders)",
        "of first GETs",
        "second GET ms",
        "cached p50 ms",
        "cached p99 ms",
    ]
    return [
        "## Media over HTTP",
        "",
        "First GET of a fresh run's output (rendered then), the second (cached); cached: wrk "
        "on one connection, one request at a time.",
        "",
        *table(header, rows),
        "",
    ]


def stall_section(results: Results) -> list[str]:
    """Polls with nothing rendering next to polls while renders run."""
    stall = results.stall
    if stall is None:
        return []
    rows = [
        stall_row("nothing rendering", stall.idle),
        stall_row("while rendering", stall.rendering),
    ]
    header = ["polls", "requests/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"]
    renders = ", ".join(
        f"{r.what} at {r.started_s:.1f} s took "
        + ("(failed)" if math.isnan(r.took_s) else f"{r.took_s:.2f} s")
        for r in stall.renders
    )
    return [
        "## A render never stalls other requests",
        "",
        "The poll workload twice: with nothing rendering, then while fresh media render (each "
        "the first GET of a new run's output, started one after another in the first half of "
        "the measured run, on connections of their own). A render that held the event loop "
        "would show as a poll as slow as the render.",
        "",
        *table(header, rows),
        "",
        f"Renders: {renders or 'none'}.",
        "",
    ]


def stall_row(label: str, found: Outcome) -> list[str]:
    if not isinstance(found, WrkResult):
        return [label, found, "", "", "", "", ""]
    numbers = [found.p50_ms, found.p99_ms, found.p999_ms, found.max_ms]
    return [label, f"{found.rps:,.0f}", *map(ms, numbers), str(found.errors)]
