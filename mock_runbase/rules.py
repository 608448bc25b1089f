"""Fault rules: "for requests like these, apply that scenario, so often".

A rule matches on the endpoint, the key or account, and for creates the model, input fields
and a prompt regex; for a generated file (``endpoint: file``) all of these are the run's that
made it. When it matches it counts the match, then fires if its budget allows:
``times`` (the next N matches), ``every`` (every Nth match) and ``probability`` (a seeded
draw, so a run of tests is reproducible). The first rule that fires wins.

Whether a rule fires is a pure function of its settings, its match number and its hit
count (``fires_at``); the draw hashes (seed, the rule's identity, match number), so every
store (and every process sharing one) draws the same sequence without sharing a generator.
The identity is a digest of the rule's body, not its place among the rules: the same rule
under the same seed draws the same sequence whatever rules were added before it. The Redis
store computes the same SHA-1 draw inside Redis (``redis.sha1hex``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mock_runbase.own_media import kind_of
from mock_runbase.scenarios import ENDPOINTS, PARAMS, SCENARIOS, Params

__all__ = [
    "RULE_ENDPOINTS",
    "Rule",
    "RuleContext",
    "RuleError",
    "draw",
    "fires_at",
    "first_firing",
    "rule_from_body",
    "rule_identity",
]

INPUT_FIELDS = ("resolution", "aspect_ratio")
RULE_ENDPOINTS = {  # match.endpoint -> the requests it matches
    **{name: frozenset({name}) for name in ENDPOINTS},
    "any": frozenset({"create", "get"}),  # Runbase's API; the files are named on their own
}
DRAW_HEX_DIGITS = 13  # 52 bits: exact in a double, in Python and in Redis' Lua alike
DRAW_SCALE = float(1 << (4 * DRAW_HEX_DIGITS))
IDENTITY_HEX_DIGITS = 16
SORT_KEYS = orjson.OPT_SORT_KEYS


class RuleError(ValueError):
    """A rule the mock cannot use. ``field`` is where in the rule (``match.resolution``;
    empty for the body as a whole), ``message`` what is wrong and what is allowed: the
    control API answers ``field: message`` (400), a config file puts its own place first
    (``rules[2].match.resolution: ...``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RuleContext:
    """What a rule matches a request by. A generated file's GET carries no key: its context
    is the run the file belongs to (its key, account, model and input)."""

    endpoint: str  # "create", "get" or "file"
    key: str
    account: str
    model: str | None = None
    input: dict[str, Any] | None = None
    kind: str | None = None  # the model's: image or video


@dataclass
class Rule:
    id: str
    scenario: str
    params: Params
    match: dict[str, str]
    prompt_regex: re.Pattern[str] | None
    times: int | None
    every: int | None
    probability: float | None
    seed: int
    number: int
    identity: str  # what its draws hash besides the seed: ``rule_identity`` of its body
    body: dict[str, Any] = field(repr=False)  # as added: how a shared store keeps it
    matches: int = 0
    hits: int = 0
    media: str | None = None  # a file of --media-dir the runs it makes serve (effect.media)

    @property
    def account(self) -> str | None:
        return self.match.get("account")

    def applies_to(self, context: RuleContext) -> bool:
        if context.endpoint not in RULE_ENDPOINTS[self.match.get("endpoint", "any")]:
            return False
        if context.endpoint not in SCENARIOS[self.scenario].endpoints:
            return False
        if self.match.get("key") not in (None, context.key):
            return False
        if self.match.get("account") not in (None, context.account):
            return False
        if self.match.get("model") not in (None, context.model):
            return False
        if self.media is not None and context.kind not in (None, kind_of(self.media)):
            return False  # an image for image models, a video for video models
        user_input = context.input or {}
        for name in INPUT_FIELDS:
            value = user_input.get(name)  # a rule spells every value as a string
            if name in self.match and (value is None or str(value) != self.match[name]):
                return False
        if self.prompt_regex is not None:
            prompt = user_input.get("prompt")
            if not isinstance(prompt, str) or not self.prompt_regex.search(prompt):
                return False
        return True

    def fires(self) -> bool:
        """Count one match; True (and one hit counted) if the budget lets it fire this time."""
        self.matches += 1
        if not fires_at(self, self.matches, self.hits):
            return False
        self.hits += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def view(self) -> dict[str, Any]:
        match = dict(self.match)
        if self.prompt_regex is not None:
            match["prompt_regex"] = self.prompt_regex.pattern
        effect: dict[str, Any] = {"scenario": self.scenario}
        effect.update({k: v for k, v in vars(self.params).items() if v is not None})
        if self.media is not None:
            effect["media"] = self.media
        return {
            "id": self.id,
            "match": match,
            "effect": effect,
            "times": self.times,
            "every": self.every,
            "probability": self.probability,
            "matches": self.matches,
            "hits": self.hits,
            "exhausted": self.exhausted,
        }


def fires_at(rule: Rule, matches: int, hits: int) -> bool:
    """Whether the rule fires at its ``matches``-th match, having fired ``hits`` times."""
    if rule.times is not None and hits >= rule.times:
        return False
    if rule.every is not None and matches % rule.every != 0:
        return False
    return rule.probability is None or draw(rule.seed, rule.identity, matches) < rule.probability


def draw(seed: int, identity: str, matches: int) -> float:
    """A uniform number in [0, 1) for one match of one rule, from SHA-1 of the three."""
    digest = hashlib.sha1(f"{seed}:{identity}:{matches}".encode()).hexdigest()
    return int(digest[:DRAW_HEX_DIGITS], 16) / DRAW_SCALE


def rule_identity(body: Mapping[str, Any]) -> str:
    """A digest of the rule's body (its ``seed`` aside: that is drawn with separately), the
    same for the same body in any process and whatever its keys' order."""
    canonical = orjson.dumps({k: v for k, v in body.items() if k != "seed"}, option=SORT_KEYS)
    return hashlib.sha1(canonical).hexdigest()[:IDENTITY_HEX_DIGITS]


def first_firing(rules: list[Rule], context: RuleContext) -> Rule | None:
    for rule in rules:
        if rule.applies_to(context) and rule.fires():
            return rule
    return None


def rule_from_body(body: dict[str, Any], number: int, seed: int) -> Rule:
    """A rule from a ``MockRuleInput`` body already checked (``rule_checks.checked_rule``)."""
    match = dict(body.get("match") or {})
    pattern = match.pop("prompt_regex", None)
    effect = body["effect"]
    name = effect["scenario"]
    if name not in SCENARIOS:
        raise RuleError("effect.scenario", f"{name!r} is not one of {', '.join(SCENARIOS)}")
    try:
        regex = re.compile(pattern) if pattern is not None else None
    except re.error as error:
        raise RuleError("match.prompt_regex", f"{pattern!r} is not a regex: {error}") from None
    return Rule(
        id=f"rule_{number}",
        scenario=name,
        params=Params(**{param: effect.get(param) for param in PARAMS}),
        match={k: str(v) for k, v in match.items()},
        prompt_regex=regex,
        times=body.get("times"),
        every=body.get("every"),
        probability=body.get("probability"),
        seed=body.get("seed", seed),
        number=number,
        identity=rule_identity(body),
        body=body,
        media=effect.get("media"),
    )
