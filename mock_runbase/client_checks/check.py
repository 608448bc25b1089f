"""``mock-runbase check-client -- CMD ...``: any client, run once per drawn plan, judged.

A mock runs in this process (``--timing polls``, the real clock, no rate limit but the
plan's). For each example hypothesis draws a ``Plan``; the mock is reset to follow it, and
``CMD`` runs with ``RUNBASE_BASE_URL`` and ``RUNBASE_API_KEY`` pointing at it. The example
fails if the command exits non-zero, runs past ``--timeout``, or breaks a rule of
``verdicts`` in the journal (a client that polls one run more than ``--max-polls`` times is
stopped at once). Hypothesis then shrinks the plan to the smallest that still fails; the
report gives its steps, the rules that reproduce it on a running mock, the client's output
and the journal of that example. Exit 0 when every example passed, 1 on a failure, 2 for a
mistake in the command line.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from mock_runbase.client_checks.plan import Plan
from mock_runbase.client_checks.verdicts import (
    ClientViolation,
    Conduct,
    exchange_line,
    judge_client,
)
from mock_runbase.spec import Spec, load_spec
from mock_runbase.testing import TEST_DEFAULTS, MockServer, RunbaseMock

__all__ = ["CheckOptions", "ClientCheck", "Example"]

# The mock a client meets: the real clock (the client's waits are real), runs timed by polls.
CHECK_SETTINGS = replace(TEST_DEFAULTS, clock="real", timing="polls", journal_size=10_000)
WATCH_INTERVAL_S = 0.2  # how often a running client's journal is looked at
OUTPUT_SHOWN = 4 * 1024  # characters of the client's output in a report


@dataclass(frozen=True)
class CheckOptions:
    examples: int = 100
    seed: int | None = None  # None: a random one, reported
    timeout: float = 60.0
    conduct: Conduct = field(default_factory=Conduct)
    strategy: dict[str, Any] = field(default_factory=dict)  # runbase_behaviours' options


@dataclass
class Example:
    """One run of the client against one plan, and what came of it."""

    plan: Plan
    exit_code: int | None  # None: stopped (``stopped`` says why)
    output: str
    entries: list[dict[str, Any]]
    violations: list[ClientViolation]
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 or bool(self.violations)

    def causes(self) -> list[str]:
        found = []
        if self.stopped is not None:
            found.append(f"the client was stopped: {self.stopped}")
        elif self.exit_code != 0:
            found.append(f"the client exited {self.exit_code}")
        found += [violation.text() for violation in self.violations]
        return found

    def view(self) -> dict[str, Any]:
        return {
            "steps": self.plan.steps(),
            "rules": self.plan.rules(),
            "causes": self.causes(),
            "violations": [
                {"rule": v.rule, "basis": v.basis, "message": v.message, "exchange": v.exchange}
                for v in self.violations
            ],
            "exitCode": self.exit_code,
            "stopped": self.stopped,
            "output": self.output[-OUTPUT_SHOWN:],
            "journal": self.entries,
        }


class ClientFailed(Exception):
    def __init__(self, example: Example) -> None:
        super().__init__("; ".join(example.causes()))
        self.example = example


class ClientCheck:
    """The mock, the command and the plans: ``run()`` checks, then ``report``."""

    def __init__(
        self,
        command: Sequence[str],
        options: CheckOptions,
        on_example: Callable[[Example, bool], None] | None = None,
    ) -> None:
        if not command:
            raise ValueError("give the client's command after --: check-client -- CMD ...")
        self.command = list(command)
        self.options = options
        self.seed = options.seed if options.seed is not None else random.randrange(2**31)
        self.on_example = on_example or (lambda example, shrinking: None)
        self.spec: Spec = load_spec()
        self.tried: list[Example] = []
        self.failure: Example | None = None
        self.flaky: str | None = None
        self.started = 0.0
        self.seconds = 0.0

    def run(self) -> bool:
        """True when the client coped with every plan drawn."""
        from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings

        from mock_runbase.strategies import runbase_behaviours

        strategy = runbase_behaviours(**self.options.strategy)
        server = MockServer(CHECK_SETTINGS).start()
        self.started = time.monotonic()
        try:
            mock = server.fresh(timing="polls", seed=self.seed)

            @settings(
                max_examples=self.options.examples,
                deadline=None,
                database=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
                report_multiple_bugs=False,
                phases=[Phase.generate, Phase.shrink],
            )
            @seed(self.seed)
            @given(strategy)
            def check(plan: Plan) -> None:
                example = self.attempt(mock, plan)
                self.tried.append(example)
                self.on_example(example, self.failure is not None)
                if example.failed:
                    self.failure = example
                    raise ClientFailed(example)

            try:
                check()
            except ClientFailed as failed:
                self.failure = failed.example
                return False
            except Exception as error:  # hypothesis' Flaky: the same plan passed and failed
                from hypothesis.errors import Flaky

                if not isinstance(error, Flaky):
                    raise
                self.flaky = str(error).splitlines()[0]
                return False
            return True
        finally:
            self.seconds = time.monotonic() - self.started
            server.stop()

    def attempt(self, mock: RunbaseMock, plan: Plan) -> Example:
        mock.behave(plan)
        env = {**os.environ, "RUNBASE_BASE_URL": mock.base_url, "RUNBASE_API_KEY": mock.api_key}
        started = time.monotonic()
        stopped: str | None = None
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                self.command,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                while True:
                    try:
                        process.wait(timeout=WATCH_INTERVAL_S)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if time.monotonic() - started > self.options.timeout:
                        stopped = f"it ran longer than --timeout {self.options.timeout:g} s"
                        break
                    polls = most_polls(mock.requests)
                    if polls > self.options.conduct.max_polls:
                        stopped = (f"it polled one run {polls} times "
                                   f"(--max-polls {self.options.conduct.max_polls})")  # fmt: skip
                        break
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait()
            output.seek(0)
            text = output.read().decode("utf-8", errors="replace")
        entries = mock.requests
        violations = judge_client(entries, self.options.conduct, self.spec, plan)
        return Example(
            plan=plan,
            exit_code=None if stopped else process.returncode,
            output=text,
            entries=entries,
            violations=violations,
            stopped=stopped,
            seconds=time.monotonic() - started,
        )

    def kinds(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for example in self.tried:
            found.update(example.plan.kinds())
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.failure is None and self.flaky is None,
            "examples": len(self.tried),
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "requestsJudged": sum(len(example.entries) for example in self.tried),
            "plansByKind": dict(sorted(self.kinds().items())),
            "minimal": None if self.failure is None else self.failure.view(),
            "flaky": self.flaky,
        }

    def write_report(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.summary(), option=orjson.OPT_INDENT_2))


def most_polls(entries: list[dict[str, Any]]) -> int:
    counts = Counter(
        entry["path"] for entry in entries if entry["method"] == "GET" and "/runs/" in entry["path"]
    )
    return max(counts.values(), default=0)


def failure_text(example: Example) -> str:
    lines = ["the smallest plan that breaks the client:", example.plan.text(), "why:"]
    lines += [f"  {cause}" for cause in example.causes()]
    lines.append("the rules that reproduce it on a running mock (POST /_mock/rules, in order):")
    lines += [f"  {orjson.dumps(rule).decode()}" for rule in example.plan.rules()]
    shown = example.output[-OUTPUT_SHOWN:].rstrip() or "(nothing)"
    code = "stopped" if example.exit_code is None else f"exit {example.exit_code}"
    lines.append(f"the client's output ({code}):")
    lines += [f"  {line}" for line in shown.splitlines()]
    lines.append("the journal of that example:")
    lines += [f"  {exchange_line(entry)}" for entry in example.entries] or ["  (no request)"]
    return "\n".join(lines)


EXTRA_HINT = "mock-runbase check-client needs its extra: pip install 'mock-runbase[contract]'"


def names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def options_from(args: Any) -> CheckOptions:
    """``CheckOptions`` from ``check-client``'s flags; ValueError naming a bad one."""
    if args.examples < 1:
        raise ValueError(f"--examples must be 1 or more, not {args.examples}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be more than 0 seconds, not {args.timeout}")
    conduct = Conduct(
        min_poll_interval=args.min_poll_interval,
        max_polls=args.max_polls,
        off=frozenset(names(args.off) or ()),
        advice=not args.no_advice,
    )
    strategy: dict[str, Any] = {"max_faults": args.max_faults, "state_polls": args.state_polls}
    for option in ("endpoints", "faults", "models", "outcomes"):
        chosen = names(getattr(args, option))
        if chosen is not None:
            strategy[option] = chosen
    from mock_runbase.strategies import runbase_behaviours

    runbase_behaviours(**strategy)  # a bad option fails here, before anything starts
    served = load_spec().catalog.models
    unknown = [model for model in strategy.get("models", []) if model not in served]
    if unknown:  # the plan's rules would be refused by the mock, example after example
        known = ", ".join(sorted(served))
        raise ValueError(f"--models: {', '.join(unknown)} not a model of the mock ({known})")
    return CheckOptions(args.examples, args.seed, args.timeout, conduct, strategy)


def run_cli(args: Any) -> int:
    try:
        import hypothesis  # noqa: F401
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    except ImportError:
        print(f"mock-runbase: {EXTRA_HINT}", file=sys.stderr)
        return 2
    command = list(args.client_command)
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        options = options_from(args)
        check = ClientCheck(command, options)
    except ValueError as error:
        print(f"mock-runbase check-client: {error}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), console=console, transient=True,
    )  # fmt: skip
    task = progress.add_task("examples", total=options.examples, note="")

    def shown(example: Example, shrinking: bool) -> None:
        if shrinking:
            progress.update(task, description="shrinking", note=f"{len(check.tried)} plans tried")
        else:
            failed = " (failed: shrinking next)" if example.failed else ""
            progress.update(task, advance=1, note=f"{example.seconds:.2f} s{failed}")

    check.on_example = shown
    try:
        with progress:
            passed = check.run()
    except FileNotFoundError as error:
        print(f"mock-runbase check-client: cannot run {command[0]!r}: {error}", file=sys.stderr)
        return 2
    if args.report is not None:
        check.write_report(args.report)
    summary = check.summary()
    kinds = ", ".join(f"{count} {kind}" for kind, count in summary["plansByKind"].items())
    facts = (
        f"{summary['examples']} examples in {summary['seconds']} s, "
        f"{summary['requestsJudged']} requests judged; plans held: {kinds or 'no faults'}"
    )
    if check.flaky is not None:
        console.print(f"[red]FAILED[/]: the client failed and then passed on the same plan: "
                      f"{check.flaky}", highlight=False)  # fmt: skip
    elif check.failure is not None:
        print(failure_text(check.failure))
        console.print(f"[red]FAILED[/] ({facts})", highlight=False)
    else:
        console.print(f"[green]passed[/]: {facts}", highlight=False)
    console.print(f"--seed {check.seed} repeats this run", highlight=False)
    return 0 if passed else 1
