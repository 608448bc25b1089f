"""The summary a run ends with: one table row per contract, then each failure in full."""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .registry import Result

__all__ = ["render"]

STYLES = {"passed": "green", "failed": "bold red", "skipped": "yellow", "not run": "dim"}


def render(results: Iterable[Result], target: str, footer: str, *, width: int, color: bool) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    shown = [r for r in results if r.passed or r.failed or r.skipped]
    table = Table(title=f"Runbase contracts against {target}", title_justify="left")
    table.add_column("contract", overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("examples", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("finding", ratio=1, overflow="fold")
    for result in shown:
        outcome = result.outcome
        details = [f"FAILED {f.item}: {f.title}" for f in result.failures]
        details += [f"skipped: {reason}" for reason in sorted(result.skips)]
        details += [f"note: {n}" for n in sorted(result.notes)]
        table.add_row(
            result.contract.name,
            Text(outcome, style=STYLES[outcome]),
            str(result.examples),
            str(result.runs),
            "\n".join(details),
        )
    console.print(table)
    for result in shown:
        for failure in result.failures:
            body = failure.message
            if failure.example:
                body += "\n\nMinimal failing example:\n" + failure.example
            # plain text, never hard-wrapped: the curl command must survive copy and paste
            console.rule(Text(f"{result.contract.name}: {failure.item}"), style="red")
            console.print(Text(body), soft_wrap=True)
    passed = sum(r.outcome == "passed" for r in shown)
    failed = sum(r.outcome == "failed" for r in shown)
    skipped = sum(r.outcome == "skipped" for r in shown)
    console.print(f"{passed} contracts passed, {failed} failed, {skipped} skipped. {footer}")
    return buffer.getvalue()
