"""pytest wiring of the contract suite: options, the target, selection, results and the summary.

``pytest contracts [--base-url URL | --app MODULE:ATTR | --live] [--check NAME ...]``; every
contract is a test marked ``contract(name)``. Options are read here, so run the suite as
``pytest contracts ...`` (pytest honours options of the conftests of its arguments).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import core as hypothesis_core
from hypothesis.vendor import pretty

from . import registry, report
from .facts import use_spec
from .options import Options, options
from .registry import CONTRACTS, RESULTS, ContractViolation, Failure
from .session import (
    PROFILES,
    built_target,
    close_target,
    current_target,
    settings_for,
    use_options,
)
from .target import Control, Target, spend_line

CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
PRINTER = "RepresentationPrinter"  # hypothesis.core's, which schemathesis replaces
EXAMPLE_NOTES = ("Falsifying", "Failing test case", "Draw ", "Explanation")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbase-contracts", "Runbase contract suite")
    with contextlib.suppress(ValueError):  # pytest-base-url's --base-url means the same: share it
        group.addoption("--base-url", default=None, help="a live server's API base URL "
                        "(e.g. http://localhost:8080/v1; env RUNBASE_BASE_URL)")  # fmt: skip
    add = group.addoption
    add("--app", default=None, metavar="MODULE:ATTR",
        help="judge this ASGI app in process (an app, or a function of no arguments)")  # fmt: skip
    add("--live", action="store_true", help="the real API (needs RUNBASE_API_KEY), spend-capped")
    add("--max-spend-usd", type=float, default=0.5, help="--live: hard cap (default 0.50)")
    add("--api-key", default=None, help="the key to send (env RUNBASE_API_KEY)")
    add("--other-api-key", default=None,
        help="a key of another account, for run_is_invisible_to_another_key "
             "(env RUNBASE_OTHER_API_KEY)")  # fmt: skip
    add("--check", action="append", default=[], metavar="NAME", help="run only these contracts")
    add("--list-checks", action="store_true", help="list the contracts and exit")
    add("--contract-profile", choices=sorted(PROFILES), default="default",
        help="how many examples each property tries (default: default)")  # fmt: skip
    add("--contract-spec", type=Path, default=None, help="judge against another openapi.yaml")
    add("--mock-admin-token", default=None, help="the mock's admin token (for /_mock)")
    add("--run-timeout", type=float, default=120.0, help="seconds a run may take to finish")
    add("--no-rate-limit", action="store_true",
        help="declare that the server has no rate limiter: rate_limit_is_per_key_as_documented "
             "is then skipped, saying what it saw, instead of failed")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract(name): a registered Runbase contract")
    config.addinivalue_line(
        "filterwarnings", "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    )
    env = os.environ.get
    base_url = config.getoption("base_url", None) or env("RUNBASE_BASE_URL") or None
    live = bool(config.getoption("live"))
    remote = live or base_url is not None
    use_spec(config.getoption("contract_spec"))
    use_options(
        Options(
            base_url=base_url,
            app=config.getoption("app"),
            live=live,
            api_key=(config.getoption("api_key") or env("RUNBASE_API_KEY") or None)
            if remote
            else None,
            other_api_key=config.getoption("other_api_key") or env("RUNBASE_OTHER_API_KEY") or None,
            max_spend_usd=config.getoption("max_spend_usd"),
            checks=tuple(config.getoption("check")),
            profile=config.getoption("contract_profile"),
            admin_token=config.getoption("mock_admin_token") or env("MOCK_RUNBASE_ADMIN_TOKEN"),
            run_timeout=config.getoption("run_timeout"),
            no_rate_limit=config.getoption("no_rate_limit"),
        )
    )
    registry.use_settings(settings_for)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def target() -> Target:
    return current_target()


@pytest.fixture(scope="session")
def control(target: Target) -> Control:
    """The mock's control API; contracts that need it are skipped where it does not answer."""
    found = target.control
    if found is None:
        pytest.skip(f"needs the mock's control API (/_mock): {target.control_reason}")
    return found


@pytest.fixture(scope="session")
def other_key(target: Target) -> str:
    found = target.keys.other()
    if found is None:
        pytest.skip("needs a key of another account: --other-api-key or RUNBASE_OTHER_API_KEY")
    return found


def pytest_unconfigure(config: pytest.Config) -> None:
    close_target()


# --- selection and order --------------------------------------------------------------------


def contract_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(registry.MARKER)
    return str(marker.args[0]) if marker else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if contract_of(item)]
    if not ours:
        return
    chosen = options()
    unknown = set(chosen.checks) - set(CONTRACTS)
    if unknown:
        raise pytest.UsageError(
            f"unknown contract {', '.join(sorted(unknown))}; known: {', '.join(sorted(CONTRACTS))}"
        )
    dropped = [i for i in ours if chosen.checks and contract_of(i) not in chosen.checks]
    if config.getoption("list_checks"):
        writer = config.get_terminal_writer()
        for entry in CONTRACTS.values():
            needs = " [needs /_mock]" if entry.needs_control else ""
            paid = " [creates runs]" if entry.creates_runs else ""
            writer.line(f"{entry.name}{needs}{paid}\n    {entry.rule} ({entry.source})")
        dropped = ours
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in set(dropped)]
    problem = chosen.problem
    for item in items:
        name = contract_of(item)
        if name is None:
            continue
        item.user_properties += [("contract", name), ("rule", CONTRACTS[name].rule)]
        if problem:
            item.add_marker(pytest.mark.skip(reason=problem))
    # free contracts first: with a spend cap, every free check runs before any paid one
    items.sort(key=lambda i: bool((n := contract_of(i)) and CONTRACTS[n].creates_runs))


# --- results ---------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    name = contract_of(item)
    if name is None:
        return (yield)
    registry.enter(name)
    # schemathesis swaps hypothesis' printer for one that prints nothing (for speed on large
    # schemas), which blanks every failing example; a contract's must be readable
    silent = getattr(hypothesis_core, PRINTER)
    setattr(hypothesis_core, PRINTER, pretty.RepresentationPrinter)
    try:
        return (yield)
    finally:
        setattr(hypothesis_core, PRINTER, silent)
        registry.enter(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    result = yield
    name = contract_of(item)
    if name is not None:
        record(RESULTS[name], item, call, result)
    return result


def record(
    result: registry.Result, item: pytest.Item, call: pytest.CallInfo[None], rep: pytest.TestReport
) -> None:
    label = getattr(getattr(item, "callspec", None), "id", None) or item.name
    if rep.skipped:
        result.skipped += 1
        longrepr: Any = rep.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        result.skips.add(reason.removeprefix("Skipped: "))
    elif rep.failed:
        result.failed += 1
        result.failures.append(failure(label, call))
    elif rep.when == "call":
        result.passed += 1
    if rep.when == "call":
        result.examples += examples_tried(getattr(item, "hypothesis_statistics", ""))


def examples_tried(statistics: str) -> int:
    """Test cases of every phase, from the statistics hypothesis' pytest plugin leaves on an
    item ("- 7 passing, 1 failing, and 2 invalid test cases" a phase)."""
    return sum(sum(map(int, found)) for found in CASES.findall(statistics))


def failure(label: str, call: pytest.CallInfo[None]) -> Failure:
    error = call.excinfo.value if call.excinfo else None
    if error is None:
        return Failure(label, "failed", "", None, None)
    notes = [str(n) for n in getattr(error, "__notes__", [])]
    inner = violation_in(error)
    if inner is not None and inner is not error:  # e.g. hypothesis' FlakyFailure around it
        notes += [str(n) for n in getattr(inner, "__notes__", [])]
        error = inner
    example = "\n".join(n for n in notes if n.startswith(EXAMPLE_NOTES)) or None
    if isinstance(error, ContractViolation):
        return Failure(label, error.title, str(error), error.curl, example)
    text = str(error).strip()
    title = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    return Failure(label, title[:200], text[:4000], None, example)


def violation_in(error: BaseException) -> ContractViolation | None:
    """The contract violation an error is, or holds in its (nested) exception groups."""
    if isinstance(error, ContractViolation):
        return error
    for inner in getattr(error, "exceptions", ()):
        found = violation_in(inner)
        if found is not None:
            return found
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not any(r.passed or r.failed or r.skipped for r in RESULTS.values()):
        return
    built = built_target()
    where = built.description if built else describe(options())
    runs = sum(r.runs for r in RESULTS.values())
    footer = spend_line(built.ledger, runs) if built else "No request was sent."
    writer = terminalreporter._tw
    text = report.render(
        RESULTS.values(), where, footer, width=writer.fullwidth, color=writer.hasmarkup
    )
    terminalreporter.write_sep("=", "Runbase contract suite")
    terminalreporter.write(text)


def describe(chosen: Options) -> str:
    if chosen.live or chosen.base_url:
        return chosen.base_url or "the real API"
    return chosen.app or "the in-process mock"
