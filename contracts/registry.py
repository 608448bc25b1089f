"""Contracts registered by name, and the failures they raise.

Each property is a test function decorated with ``@contract(name, rule=...)``: the name is the
rule it guards (``mock-runbase contract --check NAME`` selects it), the rule is the documented
sentence it checks. A broken rule raises ``ContractViolation``, whose message gives the rule,
what was received, what is documented and a curl command that reproduces the exchange.

    ContractViolation(AssertionError)   the server (or client) broke a documented rule
    SpendCapReached (in spend.py)       a paid create was not sent: turned into a skip
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import settings as hypothesis_settings

__all__ = [
    "CONTRACTS",
    "RESULTS",
    "Contract",
    "ContractViolation",
    "Result",
    "contract",
    "current",
    "note",
    "violation",
]

F = TypeVar("F", bound=Callable[..., Any])
MARKER = "contract"


@dataclass(frozen=True)
class Contract:
    name: str
    rule: str
    source: str  # documented | inferred | mock
    needs_control: bool
    creates_runs: bool
    examples: int  # max_examples of the default profile
    module: str


@dataclass
class Failure:
    item: str
    title: str
    message: str
    curl: str | None
    example: str | None


@dataclass
class Result:
    contract: Contract
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    examples: int = 0
    runs: int = 0
    failures: list[Failure] = field(default_factory=list)
    skips: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        if self.passed:
            return "passed"
        return "skipped" if self.skipped else "not run"


CONTRACTS: dict[str, Contract] = {}
RESULTS: dict[str, Result] = {}
_CURRENT: list[str | None] = [None]
_SETTINGS: list[Callable[[Contract], hypothesis_settings]] = []


def use_settings(factory: Callable[[Contract], hypothesis_settings]) -> None:
    """How a contract's hypothesis settings are made (set by conftest from the profile)."""
    _SETTINGS[:] = [factory]


def contract(
    name: str,
    *,
    rule: str,
    source: str = "documented",
    needs_control: bool = False,
    creates_runs: bool = False,
    examples: int = 20,
    settings: bool = True,
    count_calls: bool = True,
) -> Callable[[F], F]:
    """Register a property under ``name``; apply the profile's hypothesis settings to it.

    A ``@given`` test's examples are counted from hypothesis' own statistics (wrapping its
    test would blank the failing example hypothesis prints). Any other function counts one
    per call (``count_calls``) or calls ``tick()`` itself, and gets the settings only if asked
    (``settings``: schemathesis' ``parametrize()`` reads them from the function).
    """

    def decorate(test: F) -> F:
        known = CONTRACTS.get(name)
        if known is not None and known.module != test.__module__:
            raise ValueError(f"contract {name!r} is already registered by {known.module}")
        entry = Contract(name, rule, source, needs_control, creates_runs, examples, test.__module__)
        CONTRACTS[name] = entry
        RESULTS.setdefault(name, Result(entry))
        given = hasattr(test, "hypothesis")
        if not given and count_calls:
            test = counted(test, name)
        if _SETTINGS and (given or settings):
            test = _SETTINGS[0](entry)(test)
        marked: F = getattr(pytest.mark, MARKER)(name)(test)
        return marked

    return decorate


def counted(function: F, name: str) -> F:
    @functools.wraps(function)
    def counting(*args: Any, **kwargs: Any) -> Any:
        RESULTS[name].examples += 1
        return function(*args, **kwargs)

    return counting  # type: ignore[return-value]


def tick() -> None:
    """Count one example of the running contract (schemathesis cases, state machines)."""
    name = _CURRENT[0]
    if name:
        RESULTS[name].examples += 1


_RAISED: list[Any] = []  # the ContractViolations of the running test


def enter(name: str | None) -> None:
    _CURRENT[0] = name
    _RAISED.clear()


def raised() -> Any:
    """The first violation the running test raised (a later refusal must not hide it)."""
    return _RAISED[0] if _RAISED else None


def current() -> Contract | None:
    name = _CURRENT[0]
    return CONTRACTS.get(name) if name else None


def count_run() -> None:
    name = _CURRENT[0]
    if name:
        RESULTS[name].runs += 1


def note(text: str) -> None:
    """A fact worth a line in the summary (``the server's own rate limiter is off``)."""
    name = _CURRENT[0]
    if name:
        RESULTS[name].notes.add(text)


class ContractViolation(AssertionError):
    """A response (or request) broke a documented rule.

    The message names the contract and its rule, shows what was received next to what is
    documented, and ends with a curl command that sends the same request.
    """

    def __init__(self, title: str, message: str, curl: str | None) -> None:
        super().__init__(message)
        self.title = title
        self.curl = curl


def violation(
    title: str,
    *,
    received: str,
    documented: str,
    curl: str | None = None,
) -> ContractViolation:
    entry = current()
    lines = [f"[{entry.name}] {title}" if entry else title]
    if entry:
        lines.append(f"  Rule:       {entry.rule} ({entry.source})")
    lines.append(f"  Received:   {received}")
    lines.append(f"  Documented: {documented}")
    if curl:
        lines.append("  Reproduce with:")
        lines.extend(f"    {line}" for line in curl.splitlines())
    found = ContractViolation(title, "\n".join(lines), curl)
    _RAISED.append(found)
    return found
