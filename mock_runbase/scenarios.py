"""Forced outcomes: how a run (or the create request itself) should go, by name.

A client picks one with the header ``X-Mock-Scenario: fail`` or, when it cannot set
headers, with a tag in the prompt: ``[mock:fail]``. Each scenario is a registered function
that returns an ``Effect``; the control API and CLI list the registry, nothing branches on
names elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mock_runbase.errors import RunbaseError

__all__ = ["SCENARIOS", "Effect", "pick_scenario", "scenario"]

SCENARIO_HEADER = "x-mock-scenario"
PROMPT_TAG = re.compile(r"\[mock:([A-Za-z0-9_-]+)\]")
DEFAULT = "succeed"


@dataclass(frozen=True)
class Effect:
    """What a scenario does to a run: its outcome, its pace, or an error instead of a run."""

    outcome: str = "succeeded"
    error: dict[str, str] | None = None
    slowdown: float = 1.0
    never_finishes: bool = False
    http_error: RunbaseError | None = None


SCENARIOS: dict[str, Callable[[], Effect]] = {}


def scenario(name: str) -> Callable[[Callable[[], Effect]], Callable[[], Effect]]:
    def register(function: Callable[[], Effect]) -> Callable[[], Effect]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is already registered")
        SCENARIOS[name] = function
        return function

    return register


@scenario("succeed")
def succeed() -> Effect:
    """The run goes pending -> processing -> succeeded (the default)."""
    return Effect()


@scenario("fail")
def fail() -> Effect:
    """The run goes pending -> processing -> failed, with an error; its cost is refunded."""
    return Effect(
        outcome="failed",
        error={"message": "The provider could not generate the image", "code": "generation_failed"},
    )


@scenario("stuck")
def stuck() -> Effect:
    """The run stays processing for ever (test your client's timeout)."""
    return Effect(never_finishes=True)


@scenario("slow")
def slow() -> Effect:
    """The run takes ten times longer than the timing profile says."""
    return Effect(slowdown=10.0)


@scenario("error-500")
def error_500() -> Effect:
    """The create request answers 500 and creates nothing."""
    return Effect(http_error=RunbaseError(500, "internal_error", "Internal server error"))


def pick_scenario(header: str | None, user_input: dict[str, Any]) -> tuple[str, str | None]:
    """(scenario name, warning): the header wins over a prompt tag; unknown names warn."""
    requested = header.strip().lower() if header else None
    if not requested:
        prompt = user_input.get("prompt")
        found = PROMPT_TAG.search(prompt) if isinstance(prompt, str) else None
        requested = found[1].lower() if found else None
    if requested is None:
        return DEFAULT, None
    if requested not in SCENARIOS:
        known = ", ".join(sorted(SCENARIOS))
        return DEFAULT, f"unknown scenario {requested!r} ignored; known: {known}"
    return requested, None


def describe() -> dict[str, str]:
    return {name: (function.__doc__ or "").strip() for name, function in SCENARIOS.items()}
