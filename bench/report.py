"""The results as a markdown report (with the targets met or missed) and a bar chart."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import WrkResult
from results_model import Outcome, Results

__all__ = ["render_markdown", "write_chart"]

MIX = "mix 1:10"
STORE_WORKLOADS = ("create", "poll", MIX)
IN_MEMORY = "in-memory, 1 worker"  # the "mock" target, as named in the shared-store section


@dataclass(frozen=True)
class Goal:
    name: str
    wanted: str
    measure: Callable[[Results], tuple[float | None, str]]  # (value, as shown)
    passes: Callable[[float], bool]


def ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def ratio(results: Results, workload: str, other: str) -> float | None:
    mine, theirs = results.rps(workload, "mock"), results.rps(workload, other)
    return mine / theirs if mine and theirs else None


def vs_prism(results: Results) -> tuple[float | None, str]:
    value = ratio(results, MIX, "prism")
    return value, "n/a" if value is None else f"{value:.2f}x"


def vs_bare(results: Results) -> tuple[float | None, str]:
    value = ratio(results, MIX, "bare")
    return value, "n/a" if value is None else f"{value:.0%}"


def paced_p99(results: Results) -> tuple[float | None, str]:
    paced = results.fixed.get("mock")
    if not isinstance(paced, WrkResult):
        return None, "n/a"
    held = paced.rps >= 0.95 * results.rate
    shown = f"{paced.p99_ms:.2f} ms at {paced.rps:.0f} requests/s"
    return (paced.p99_ms if held else math.inf), shown + ("" if held else " (rate not held)")


def probe(key: str, unit: str) -> Callable[[Results], tuple[float | None, str]]:
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


def poll_growth(results: Results) -> tuple[float | None, str]:
    small, big = results.value("poll_1k_p50"), results.value("poll_big_p50")
    held = results.value("runs_big")
    if small is None or big is None or not small:
        return None, "n/a"
    shown = f"p50 {ms(small)} ms at 1k -> {ms(big)} ms at {held or 0:.0f} runs ({big / small:.2f}x)"
    return big / small, shown


GOALS = [
    Goal("mixed workload vs Prism", ">= 3x Prism's requests/s", vs_prism, lambda v: v >= 3),
    Goal(
        "mixed workload vs bare Starlette", ">= 60% of its requests/s", vs_bare, lambda v: v >= 0.6
    ),
    Goal("mix p99 at a fixed 500 requests/s", "< 5 ms", paced_p99, lambda v: v < 5),
    Goal("first render of a 4K PNG (HTTP)", "< 150 ms", probe("first_4k", "ms"), lambda v: v < 150),
    Goal("cached image GET (one connection)", "p50 < 2 ms", cached_image, lambda v: v < 2),
    Goal("process start to healthy", "< 1 s", probe("healthy", "s"), lambda v: v < 1),
    Goal("RSS with 100k runs stored", "< 200 MB", probe("rss_big", "MB"), lambda v: v < 200),
    Goal(
        "poll latency, 1k vs 100k runs", "flat (p50 within 1.25x)", poll_growth, lambda v: v <= 1.25
    ),
]


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


def store_servers(results: Results) -> dict[str, str]:
    """The in-memory mock, then the shared-store targets: name -> label in that section."""
    return {"mock": IN_MEMORY, **results.shared}


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
        for found in results.probes.values()
    ]
    return ["## Other measurements", "", *table(["measurement", "value", "note"], rows), ""]


def goal_rows(results: Results) -> list[list[str]]:
    rows = []
    for goal in GOALS:
        value, shown = goal.measure(results)
        verdict = "n/a" if value is None else ("met" if goal.passes(value) else "**missed**")
        rows.append([goal.name, goal.wanted, shown, verdict])
    return rows


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
        *ratio_section(results),
        *fixed_section(results),
        *store_section(results),
        *probe_section(results),
    ]
    notes = [*results.notes, *error_notes(results)]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def write_chart(results: Results, path: Path) -> None:
    """Requests/s and p99 per workload, one bar per server; with Redis targets, a third row:
    the same for the in-memory mock and the mock on Redis (create, poll, mix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mosaic: Any = [["rps", "rps"], ["p99", "p99"]]  # matplotlib's stubs want HashableList
    if results.shared:
        mosaic.append(["store_rps", "store_p99"])
    fig, axes = plt.subplot_mosaic(mosaic, figsize=(10, 4 * len(mosaic)), constrained_layout=True)
    draw_bars(results, list(results.load), main_labels(results), axes["rps"], axes["p99"])
    titles = [
        ("rps", "requests/s (higher is better)"),
        ("p99", "p99 ms (lower is better)"),
    ]
    if results.shared:
        store = axes["store_rps"], axes["store_p99"]
        draw_bars(results, list(STORE_WORKLOADS), store_servers(results), *store)
        titles += [
            ("store_rps", "shared store: requests/s"),
            ("store_p99", "shared store: p99 ms"),
        ]
    for key, title in titles:
        axes[key].set_title(title)
        axes[key].legend(fontsize=8)
        axes[key].grid(axis="y", alpha=0.3)
    connections = results.settings.get("wrk", "")
    title = "mock-runbase vs Prism vs bare Starlette" + (", and on Redis" if results.shared else "")
    fig.suptitle(f"{title} ({connections})\n{machine_line(results)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_bars(
    results: Results, workloads: list[str], labels: dict[str, str], rps_axis: Any, p99_axis: Any
) -> None:
    """One group of bars per workload, one bar per server: requests/s and p99."""
    width = 0.8 / max(1, len(labels))
    for i, (name, label) in enumerate(labels.items()):
        found = [results.outcome(w, name) for w in workloads]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(workloads))]
        rps = [f.rps if isinstance(f, WrkResult) else 0.0 for f in found]
        p99 = [f.p99_ms if isinstance(f, WrkResult) else 0.0 for f in found]
        bars = rps_axis.bar(xs, rps, width, label=label)
        rps_axis.bar_label(bars, labels=[f"{v:,.0f}" if v else "n/a" for v in rps], fontsize=7)
        bars = p99_axis.bar(xs, p99, width, label=label)
        p99_axis.bar_label(bars, labels=[f"{v:.1f}" if v else "n/a" for v in p99], fontsize=7)
    for axis in (rps_axis, p99_axis):
        axis.set_xticks(range(len(workloads)), workloads)


def machine_line(results: Results) -> str:
    facts = results.machine
    cores, cpu, python = facts.get("nproc"), facts.get("cpu"), facts.get("python")
    return f"{cores} cores, {cpu}, Python {python}, {facts.get('date')}"
