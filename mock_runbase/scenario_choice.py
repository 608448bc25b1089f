"""What a request asks of the mock itself: the ``X-Mock-Scenario`` header and prompt tags.

    X-Mock-Scenario: latency; ms=250        a scenario and its parameters (HTTP style, ``;``)
    "a cat [mock:latency; ms=250]"          the same in the prompt of a create

The header works on creates, polls and generated files' GETs, a tag on creates (a poll or a
file GET has no prompt). Names and
parameter names are case-insensitive (``FAIL``, ``[MOCK:fail]``). Nothing asked is dropped
silently: an unknown name, a scenario of creates named on a poll, a second tag or a tag
beside the header is ignored with a warning (the answer's ``X-Mock-Warning``); a parameter
the scenario does not take, or a value it cannot use, is refused (400
``invalid_mock_scenario``), since a delay asked for and not applied would pass a test that
should fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from mock_runbase.errors import RunbaseError
from mock_runbase.scenarios import DEFAULT, INTEGER_PARAMS, SCENARIOS, Params, Scenario

__all__ = ["HEADER", "INVALID", "NOTHING_ASKED", "Choice", "requested_scenario", "with_warning"]

HEADER = "X-Mock-Scenario"
WARNING_HEADER = "X-Mock-Warning"
PROMPT_TAG = re.compile(r"\[mock:([^\]\n]*)\]", re.IGNORECASE)
INVALID = "invalid_mock_scenario"
MAX_ECHO = 80  # characters of a tag quoted back in a warning
REQUEST_NOUNS = {"create": "a create", "get": "a poll", "file": "a file"}


@dataclass(frozen=True)
class Choice:
    """The scenario a request gets, where it named it, and what it asked that is not applied."""

    name: str = DEFAULT
    params: Params = field(default_factory=Params)
    named_by: str | None = None  # "X-Mock-Scenario" or "prompt tag '[mock:fail]'"
    warnings: tuple[str, ...] = ()
    media: str | None = None  # a rule's effect.media: the file of --media-dir the run serves

    @property
    def warning(self) -> str | None:
        return "; ".join(self.warnings) if self.warnings else None

    def ruled_by(self, rule_id: str, name: str, params: Params, media: str | None = None) -> Choice:
        """A firing rule's scenario instead (rules come first), and a warning if the request
        named one of its own."""
        warnings = self.warnings
        if self.named_by is not None:
            why = f"rule {rule_id} fired ({name})"
            warnings += (f"{self.named_by}: {self.name} not applied, {why}",)
        return Choice(name, params, None, warnings, media)


NOTHING_ASKED = Choice()
NO_PARAMS = Params()


def requested_scenario(header: str | None, prompt: Any, endpoint: str) -> Choice:
    """The choice of a request to ``endpoint`` (``create``, ``get``, ``file``): the header,
    else the prompt's first tag, else the default. Raises 400 ``invalid_mock_scenario`` for
    parameters the named scenario cannot use."""
    if header is None and prompt is None:  # a poll without the header: the hot path
        return NOTHING_ASKED
    # no "[" (nearly every prompt): no tag, and no case-insensitive search through the prompt
    tags = list(PROMPT_TAG.finditer(prompt)) if isinstance(prompt, str) and "[" in prompt else []
    if header is not None and header.strip():
        choice = parsed(header, HEADER, endpoint)
        ignored, reason = tags, f"{HEADER} wins"
    elif tags:
        choice = parsed(tags[0][1], f"prompt tag {echo(tags[0][0])}", endpoint)
        ignored, reason = tags[1:], "only the first tag counts"
    else:
        return NOTHING_ASKED
    extra = tuple(f"prompt tag {echo(tag[0])} ignored: {reason}" for tag in ignored)
    return replace(choice, warnings=choice.warnings + extra)


def parsed(text: str, where: str, endpoint: str) -> Choice:
    name_part, *param_parts = text.split(";")
    name = name_part.strip().lower()
    entry = SCENARIOS.get(name)
    if entry is None:
        known = ", ".join(sorted(SCENARIOS))
        return Choice(warnings=(f"{where}: unknown scenario {echo(name)} ignored; known: {known}",))
    params = parsed_params(entry, param_parts, where)
    # a poll "succeeds" anyway, but not by the polls a create's run takes
    if endpoint not in entry.endpoints and (name != DEFAULT or params != NO_PARAMS):
        also = f"{where}: {name} applies to {entry.applies_to()}"
        return Choice(warnings=(f"{also}; not applied to {REQUEST_NOUNS[endpoint]}",))
    return Choice(name, params, where)


def parsed_params(entry: Scenario, parts: list[str], where: str) -> Params:
    given: dict[str, str] = {}
    for part in parts:
        if not part.strip():
            continue  # a trailing ";"
        key, equals, value = (piece.strip() for piece in part.partition("="))
        key = key.lower()
        if not equals or not key:
            raise invalid(f"{where}: {echo(part.strip())} is not name=value")
        if key not in entry.params:
            raise invalid(f"{where}: {entry.name} takes {entry.takes()}, not {echo(key)}")
        if key in given:
            raise invalid(f"{where}: {key} is given twice")
        if not value:
            raise invalid(f"{where}: {key} needs a value")
        given[key] = value

    def number(key: str) -> int | None:
        return None if key not in given else parsed_integer(key, given[key], where)

    return Params(
        code=given.get("code"),
        message=given.get("message"),
        ms=number("ms"),
        pending_polls=number("pending_polls"),
        processing_polls=number("processing_polls"),
    )


UNITS = {"ms": "milliseconds"}


def parsed_integer(key: str, value: str, where: str) -> int:
    most = INTEGER_PARAMS[key]
    if value.isascii() and value.isdigit() and int(value) <= most:
        return int(value)
    raise invalid(
        f"{where}: {key} is a whole number of {UNITS.get(key, 'polls')} from 0 to {most}, "
        f"not {echo(value)}"
    )


def invalid(message: str) -> RunbaseError:
    return RunbaseError(400, INVALID, message)


def echo(text: str) -> str:
    """User text quoted for a message or a header: ASCII only (``ascii``), and short."""
    shown = text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."
    return ascii(shown)


def with_warning(
    error: RunbaseError, warning: str | None, answer_fault: str | None = None
) -> RunbaseError:
    """``error`` answered with the choice's warning as well, and broken on its way by the
    choice's ``answer_fault`` if it has one (a new error: scenarios' errors may be shared
    instances)."""
    if warning is None and answer_fault is None:
        return error
    headers = error.headers if warning is None else {**error.headers, WARNING_HEADER: warning}
    return RunbaseError(
        error.status, error.code, error.message, headers=headers, answer_fault=answer_fault
    )
