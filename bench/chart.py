"""The bar chart of a run (latest.png): throughput, tails, the shared store and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goals import MEMORY_RUNS, memory_at
from loadgen import WrkResult
from media import MEDIA, SHORT
from plan import STORE_WORKLOADS
from results_model import Outcome, Results
from sections import main_labels, store_servers, tail_columns

__all__ = ["write_chart"]


def write_chart(results: Results, path: Path) -> None:
    """Requests/s and p99 per workload, one bar per server; p99 against bare Starlette's with
    many runs stored, and polls with and without renders; with Redis targets, a last row:
    the in-memory mock and the mock on Redis (create, poll, mix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mosaic: Any = [["rps", "rps"], ["p99", "p99"], ["tails", "stall"], ["memory", "media"]]
    if results.shared:
        mosaic.append(["store_rps", "store_p99"])
    fig, axes = plt.subplot_mosaic(mosaic, figsize=(11, 4 * len(mosaic)), constrained_layout=True)
    main = series(results, list(results.load), main_labels(results))
    draw_bars(axes["rps"], list(results.load), main, rps)
    draw_bars(axes["p99"], list(results.load), main, p99)
    workloads = list(STORE_WORKLOADS)
    draw_bars(axes["tails"], workloads, tail_series(results), p99)
    draw_stall(results, axes["stall"])
    draw_memory(results, axes["memory"])
    draw_media(results, axes["media"])
    titles = [
        ("rps", "requests/s (higher is better)"),
        ("p99", "p99 ms (lower is better)"),
        ("tails", "p99 ms against bare Starlette, with runs stored"),
        ("stall", "polls: nothing rendering vs while rendering (ms)"),
        ("memory", "RSS MB by runs stored (line: 1 GB)"),
        ("media", "media over HTTP (ms)"),
    ]
    if results.shared:
        store = series(results, workloads, store_servers(results))
        draw_bars(axes["store_rps"], workloads, store, rps)
        draw_bars(axes["store_p99"], workloads, store, p99)
        titles += [
            ("store_rps", "shared store: requests/s"),
            ("store_p99", "shared store: p99 ms"),
        ]
    for key, title in titles:
        axes[key].set_title(title)
        if axes[key].get_legend_handles_labels()[0]:  # a phase that did not run has no bars
            axes[key].legend(fontsize=8)
        axes[key].grid(axis="y", alpha=0.3)
    connections = results.settings.get("wrk", "")
    title = "mock-runbase vs Prism vs bare Starlette" + (", and on Redis" if results.shared else "")
    fig.suptitle(f"{title} ({connections})\n{machine_line(results)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


Series = dict[str, list[Outcome]]  # label -> one result per workload


def series(results: Results, workloads: list[str], labels: dict[str, str]) -> Series:
    return {label: [results.outcome(w, name) for w in workloads] for name, label in labels.items()}


def tail_series(results: Results) -> Series:
    bare = {"bare Starlette": [results.outcome(w, "bare") for w in STORE_WORKLOADS]}
    mock = {
        title: [found.get(w, "not run") for w in STORE_WORKLOADS]
        for title, found in tail_columns(results).items()
    }
    return {**bare, **mock}


def rps(found: Outcome) -> tuple[float, str]:
    value = found.rps if isinstance(found, WrkResult) else 0.0
    return value, f"{value:,.0f}" if value else "n/a"


def p99(found: Outcome) -> tuple[float, str]:
    value = found.p99_ms if isinstance(found, WrkResult) else 0.0
    return value, f"{value:.1f}" if value else "n/a"


def draw_bars(axis: Any, workloads: list[str], bars: Series, metric: Any) -> None:
    """One group of bars per workload, one bar per series, labelled with their values."""
    width = 0.8 / max(1, len(bars))
    for i, (label, found) in enumerate(bars.items()):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(workloads))]
        values, shown = zip(*map(metric, found), strict=True) if found else ((), ())
        drawn = axis.bar(xs, values, width, label=label)
        axis.bar_label(drawn, labels=shown, fontsize=7)
    axis.set_xticks(range(len(workloads)), workloads)


def draw_stall(results: Results, axis: Any) -> None:
    stall = results.stall
    runs = {"nothing rendering": stall.idle, "while rendering": stall.rendering} if stall else {}
    measures = {"p50": "p50_ms", "p99": "p99_ms", "p99.9": "p999_ms", "max": "max_ms"}
    width = 0.8 / max(1, len(runs))
    for i, (label, found) in enumerate(runs.items()):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(measures))]
        values = [
            getattr(found, a) if isinstance(found, WrkResult) else 0.0 for a in measures.values()
        ]
        drawn = axis.bar(xs, values, width, label=label)
        axis.bar_label(drawn, labels=[f"{v:.1f}" for v in values], fontsize=7)
    axis.set_xticks(range(len(measures)), list(measures))
    if runs:
        axis.set_yscale("log")  # a max of a render's length would dwarf the p50s


def draw_memory(results: Results, axis: Any) -> None:
    """RSS before any run and at each count; the 1M estimate hatched when extrapolated."""
    if results.rss_start_mb is None:
        return
    names = ["start", *(f"{level.held:,}" for level in results.stored)]
    values = [results.rss_start_mb, *(level.rss_mb for level in results.stored)]
    drawn = axis.bar(names, values, 0.6, label="measured")
    axis.bar_label(drawn, labels=[f"{v:,.0f}" for v in values], fontsize=7)
    estimate, measured = memory_at(results, MEMORY_RUNS)
    if estimate is not None and not measured:
        drawn = axis.bar(
            [f"{MEMORY_RUNS:,} (est.)"], [estimate], 0.6, hatch="//", label="extrapolated"
        )
        axis.bar_label(drawn, labels=[f"{estimate:,.0f}"], fontsize=7)
    axis.axhline(1024, color="grey", linestyle="--", linewidth=1)


def draw_media(results: Results, axis: Any) -> None:
    """First GET (a render), and cached p50 and p99 on one connection, per kind of file."""
    kinds = [key for key in MEDIA if results.value(f"first_{key}") is not None]
    measures = {
        "first GET": "first_{}",
        "cached p50": "cached_{}_p50",
        "cached p99": "cached_{}_p99",
    }
    width = 0.8 / len(measures)
    for i, (label, key) in enumerate(measures.items()):
        xs = [j + (i - (len(measures) - 1) / 2) * width for j in range(len(kinds))]
        values = [results.value(key.format(kind)) or 0.0 for kind in kinds]
        drawn = axis.bar(xs, values, width, label=label)
        axis.bar_label(drawn, labels=[f"{v:,.1f}" for v in values], fontsize=7)
    axis.set_xticks(range(len(kinds)), [SHORT[kind] for kind in kinds])
    if kinds:
        axis.set_yscale("log")  # a render takes a thousand times a cached serve


def machine_line(results: Results) -> str:
    facts = results.machine
    cores, cpu, python = facts.get("nproc"), facts.get("cpu"), facts.get("python")
    return f"{cores} cores, {cpu}, Python {python}, {facts.get('date')}"
