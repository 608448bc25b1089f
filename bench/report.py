"""The results as a markdown report (with the targets met or missed) and a bar chart."""

from __future__ import annotations

import math

from chart import write_chart
from goals import goal_rows, ms, rps_ratio
from loadgen import WrkResult
from plan import STORE_WORKLOADS
from results_model import Results
from sections import (
    main_labels,
    media_section,
    outcome_cells,
    stall_section,
    store_servers,
    stored_section,
    table,
    tails_section,
)

__all__ = ["render_markdown", "write_chart"]

MEDIA_PROBES = ("first_", "second_", "cached_")  # shown in the media section, not twice


def ratio(results: Results, workload: str, other: str) -> float | None:
    return rps_ratio(results, workload, "mock", other)


def throughput_section(results: Results) -> list[str]:
    rows = [
        [workload, label, *outcome_cells(results.outcome(workload, name))]
        for workload in results.load
        for name, label in main_labels(results).items()
    ]
    if not rows:
        return []
    header = ["workload", "server", "requests/s", "p50 ms", "p99 ms", "errors"]
    return ["## Throughput (closed loop)", "", *table(header, rows), ""]


def ratio_section(results: Results) -> list[str]:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    rows = [
        [w, shown(ratio(results, w, "prism")), shown(ratio(results, w, "bare"))]
        for w in results.load
    ]
    header = ["workload", "mock / Prism (requests/s)", "mock / bare Starlette (requests/s)"]
    return ["## Ratios", "", *table(header, rows), ""]


def fixed_section(results: Results) -> list[str]:
    rows = []
    for name, label in main_labels(results).items():
        found = results.fixed.get(name, "not run")
        if isinstance(found, WrkResult):
            numbers = [found.p50_ms, found.p99_ms, found.p999_ms, found.max_ms]
            cells = [f"{found.rps:.0f}", *map(ms, numbers), str(found.late), str(found.errors)]
        else:
            cells = [found, "", "", "", "", "", ""]
        rows.append([label, *cells])
    if not rows:
        return []
    header = [
        "server",
        "achieved req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "late",
        "errors",
    ]
    title = f"## Fixed rate: the mix at {results.rate} requests/s"
    return [title, "", *table(header, rows), ""]


def store_section(results: Results) -> list[str]:
    """The mock on Redis (1 and 2 workers) next to the in-memory single worker."""
    if not results.shared:
        return []
    baseline = {w: results.rps(w, "mock") for w in STORE_WORKLOADS}
    rows = []
    for workload in STORE_WORKLOADS:
        for name, label in store_servers(results).items():
            rps, base = results.rps(workload, name), baseline[workload]
            versus = f"{rps / base:.2f}" if rps and base else "n/a"
            rows.append([workload, label, *outcome_cells(results.outcome(workload, name)), versus])
    header = ["workload", "server", "requests/s", "p50 ms", "p99 ms", "errors", "vs in-memory"]
    lines = [
        "## Shared store (Redis)",
        "",
        "The mock as above (`mock`, in-memory store, one process) and the same command with "
        "`--store redis://...` on a local redis-server (no persistence), with 1 and 2 uvicorn "
        "workers. `vs in-memory`: requests/s over those of the in-memory single worker. wrk, "
        "the workers and redis-server share the machine's "
        f"{results.machine.get('nproc', '?')} cores.",
        "",
        *table(header, rows),
        "",
    ]
    for name, counts in results.spread.items():
        label = results.shared.get(name, name)
        lines += [
            f"{label}: wrk's connections per worker halfway through the mix: "
            f"{' + '.join(map(str, counts))} (the workers share one listening socket; each "
            "connection stays with the worker that accepted it).",
            "",
        ]
    return lines


def shown_value(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.0f} {unit}" if unit == "runs" else f"{value:,.2f} {unit}"


def probe_section(results: Results) -> list[str]:
    rows = [
        [
            found.label,
            shown_value(found.value, found.unit),
            found.note,
        ]
        for key, found in results.probes.items()
        if not key.startswith(MEDIA_PROBES)
    ]
    return ["## Other measurements", "", *table(["measurement", "value", "note"], rows), ""]


def error_notes(results: Results) -> list[str]:
    """A warning for every run where more than 1% of the answers were errors."""
    runs = [
        (f"{workload}, {results.labels.get(name, name)}", found)
        for workload, by_target in results.load.items()
        for name, found in by_target.items()
    ]
    runs += [(f"fixed rate, {results.labels.get(n, n)}", f) for n, f in results.fixed.items()]
    return [
        f"{what}: {found.errors} of {found.requests} answers were errors (status >= 400, "
        "socket errors or time-outs): these numbers do not compare"
        for what, found in runs
        if isinstance(found, WrkResult) and found.errors > 0.01 * max(1, found.requests)
    ]


def rounds_section(results: Results) -> list[str]:
    """Each round's requests/s, when the closed-loop workloads ran in several (``--rounds``)."""
    if not results.rounds:
        return []
    return [
        "Closed-loop create, poll and mix of each single-process target: the round of median",
        "requests/s of several, each on a fresh server, the targets in a rotating order (the",
        "machine's speed drifts; one round takes a target at one moment of it). Each round:",
        "",
        *(f"- {line}" for line in results.rounds),
        "",
    ]


def render_markdown(results: Results) -> str:
    machine = [[name, value] for name, value in results.machine.items()]
    settings = [[name, value] for name, value in results.settings.items()]
    lines = [
        "# mock-runbase benchmark",
        "",
        "Made by `python bench/run.py` (see bench/README.md). Numbers from one machine, one run.",
        "",
        *table(["machine", ""], machine),
        "",
        *table(["setting", ""], settings),
        "",
        "## Targets",
        "",
        *table(["target", "wanted", "measured", ""], goal_rows(results)),
        "",
        *throughput_section(results),
        *rounds_section(results),
        *ratio_section(results),
        *fixed_section(results),
        *store_section(results),
        *tails_section(results),
        *stored_section(results),
        *media_section(results),
        *stall_section(results),
        *probe_section(results),
    ]
    notes = [*results.notes, *error_notes(results)]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)
