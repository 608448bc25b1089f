"""Rules the mock can use: refused if they could never match or name a setting they ignore.

``checked_rule`` is the one parser of a rule body, for the control API and the config file's
``rules:`` alike. It checks, against the catalog the mock *serves* (``--models`` included):

- ``match.model`` is a model of it; ``match.resolution`` and ``match.aspect_ratio`` are
  values some model offers (the given model, if any, and every field of the match at once);
- a poll (``endpoint: get``) matches no model, input or prompt; the endpoint is one the
  scenario applies to (``any``, the default, is creates and polls; a file's scenario needs
  ``endpoint: file``); a file's GET matches by the run it belongs to, so every field may be
  named with ``endpoint: file``;
- ``match.key`` can be a key (``sk-``); ``prompt_regex`` compiles;
- ``effect`` carries only the parameters its scenario uses;
- ``seed`` comes with ``probability``, which is above 0 (a rule that never fires is refused);
- ``effect.media`` comes with a scenario whose runs succeed, on creates, names a file of
  ``--media-dir`` the mock can serve (``own_media``), of a kind some matched model makes;

then the ``MockRuleInput`` schema. Each problem is a ``RuleError`` naming the field, the
value and what is allowed. The control document states the same facts as schema:
``match_branches`` gives ``match`` one ``anyOf`` branch per model of the catalog (the file
holds the packaged catalog's, the document served is rebuilt from the served one), and
``with_media_names`` gives ``effect.media`` the names of ``--media-dir`` (the file: none).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from mock_runbase.catalog import Catalog, Model
from mock_runbase.own_media import MediaDirectory, MediaError, kind_of
from mock_runbase.rules import INPUT_FIELDS, RULE_ENDPOINTS, RuleError
from mock_runbase.scenarios import PARAMS, SCENARIOS, Params

__all__ = [
    "RULE_ENDPOINTS",
    "RuleError",
    "checked_rule",
    "match_branches",
    "rule_endpoints",
    "with_match_branches",
    "with_media_names",
]

KEY_PREFIX = "sk-"
CREATE_ONLY_MATCH = ("model", *INPUT_FIELDS, "prompt_regex")
RULE_SCHEMA = ("components", "schemas", "MockRuleInput", "properties", "match")
MATCHED = {
    "create": "a create",
    "get": "a poll",
    "file": "a file",
    "any": "creates or polls (endpoint any, the default)",
}
Choices = dict[str, list[str] | None]  # input field -> the values a rule may match (None: any)


def checked_rule(
    body: Any, catalog: Catalog, schema: Any, media: MediaDirectory | None = None
) -> dict[str, Any]:
    """``body`` if it is a rule the mock can use, else ``RuleError``. ``schema`` is the
    compiled ``MockRuleInput`` of the control document; the checks of meaning run first
    (their messages say more), skipping what has the wrong type, which the schema then names.
    ``media`` is ``--media-dir`` (None: none), where ``effect.media`` must name a file."""
    if isinstance(body, dict):
        check_meaning(body, catalog)
        effect = body.get("effect")
        name = effect.get("media") if isinstance(effect, dict) else None
        if isinstance(name, str) and name:
            try:
                (media or MediaDirectory(None)).file(name)
            except MediaError as error:
                raise RuleError("effect.media", str(error)) from None
    problem = next(iter(schema.iter_errors(body)), None)
    if problem is not None:
        raise RuleError(".".join(str(part) for part in problem.instance_path), problem.message)
    checked: dict[str, Any] = body
    return checked


def check_meaning(body: Mapping[str, Any], catalog: Catalog) -> None:
    match = body.get("match")
    match = match if isinstance(match, dict) else {}
    effect = body.get("effect")
    check_effect(effect if isinstance(effect, dict) else {}, match)
    check_media(effect if isinstance(effect, dict) else {}, match, catalog)
    check_poll_match(match)
    key = match.get("key")
    if isinstance(key, str) and not key.startswith(KEY_PREFIX):
        raise RuleError("match.key", f"{key!r} is never a key: API keys start with {KEY_PREFIX!r}")
    pattern = match.get("prompt_regex")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as error:
            raise RuleError("match.prompt_regex", f"{pattern!r} is not a regex: {error}") from None
    check_catalog(match, catalog)
    if body.get("probability") == 0 and not isinstance(body.get("probability"), bool):
        raise RuleError(
            "probability", "0 never fires: give one above 0 (1: every match), or add no rule"
        )
    if "seed" in body and "probability" not in body:
        raise RuleError("seed", "only a probability rule draws: add probability, or drop seed")


def check_effect(effect: Mapping[str, Any], match: Mapping[str, Any]) -> None:
    name = effect.get("scenario")
    if not isinstance(name, str):
        return
    entry = SCENARIOS.get(name)
    if entry is None:
        raise RuleError("effect.scenario", f"{name!r} is not one of {', '.join(SCENARIOS)}")
    for param in PARAMS:
        if param in effect and param not in entry.params:
            raise RuleError(f"effect.{param}", f"{name} takes {entry.takes()}, not {param}")
    endpoint = match.get("endpoint", "any")
    if (
        isinstance(endpoint, str)
        and endpoint in RULE_ENDPOINTS
        and not RULE_ENDPOINTS[endpoint] & entry.endpoints
    ):
        uses = " or ".join(rule_endpoints(entry.endpoints))
        raise RuleError(
            "match.endpoint",
            f"{name} applies to {entry.applies_to()}, never to {MATCHED[endpoint]}: "
            f"use endpoint {uses}",
        )


def rule_endpoints(endpoints: frozenset[str]) -> list[str]:
    """The values of ``match.endpoint`` under which a scenario of ``endpoints`` can apply."""
    return [name for name, reached in RULE_ENDPOINTS.items() if reached & endpoints]


def check_media(effect: Mapping[str, Any], match: Mapping[str, Any], catalog: Catalog) -> None:
    """What can be told of ``effect.media`` without reading the file (``checked_rule`` then
    reads it): its scenario makes runs that succeed, on creates, of models of its kind."""
    name, scenario = effect.get("media"), effect.get("scenario")
    if not isinstance(name, str) or not isinstance(scenario, str):
        return
    if scenario in SCENARIOS and not succeeds(scenario):
        serving = ", ".join(entry for entry in SCENARIOS if succeeds(entry))
        raise RuleError(
            "effect.media",
            f"{scenario} makes no run that succeeds, so no run would serve {name!r}: "
            f"use media with {serving}",
        )
    if match.get("endpoint") == "get":
        raise RuleError(
            "effect.media", "media is the file of a run a create makes: use endpoint create or any"
        )
    kind = kind_of(name)
    model = catalog.models.get(str(match.get("model")))
    if kind is None:
        return  # the file check names the extensions served
    if model is not None and model.kind != kind:
        raise RuleError(
            "effect.media",
            f"{name!r} is {article(kind)} {kind} and {model.id} makes {model.kind}s: "
            f"give {article(model.kind)} {model.kind} (an image for an image model, an MP4 "
            "for a video model)",
        )
    if model is None and not any(entry.kind == kind for entry in catalog):
        raise RuleError("effect.media", f"{name!r} is {article(kind)} {kind} and no model of "
                        f"this mock makes {kind}s, so this rule never matches")  # fmt: skip


def succeeds(scenario: str) -> bool:
    """Whether the runs of ``scenario`` end ``succeeded`` (and so serve a file)."""
    effect = SCENARIOS[scenario].build(Params())
    return (
        "create" in SCENARIOS[scenario].endpoints
        and effect.outcome == "succeeded"
        and not effect.never_finishes
        and effect.http_error is None
        and effect.wire_fault is None
    )


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def check_poll_match(match: Mapping[str, Any]) -> None:
    if match.get("endpoint") != "get":
        return
    for name in CREATE_ONLY_MATCH:
        if name in match:
            raise RuleError(
                f"match.{name}",
                f"a poll has no model, input or prompt, so with endpoint get this {name} "
                "never matches: use endpoint create or any",
            )


def check_catalog(match: Mapping[str, Any], catalog: Catalog) -> None:
    """The match's model and input values are a model's, all at once."""
    choices = {model.id: match_choices(model) for model in catalog}
    model = match.get("model")
    if isinstance(model, str) and model not in choices:
        raise RuleError(
            "match.model", f"{model!r} is not a model of this mock{hint(model, choices)}"
        )
    candidates = [model] if isinstance(model, str) else list(choices)
    matched: list[str] = []
    for name in INPUT_FIELDS:
        value = match.get(name)
        if not isinstance(value, str):
            continue
        offering = [m for m in candidates if offers(choices[m], name, value)]
        if not offering:
            raise RuleError(f"match.{name}", not_offered(name, value, model, matched, choices))
        candidates = offering
        matched.append(f"{name} {value!r}")


def match_choices(model: Model) -> Choices:
    properties = model.input_schema.get("properties", {})
    choices: Choices = {}
    for name in INPUT_FIELDS:
        prop = properties.get(name)
        if isinstance(prop, Mapping):
            enum = prop.get("enum")
            choices[name] = [str(v) for v in enum] if isinstance(enum, list) else None
    return choices


def offers(choices: Choices, name: str, value: str) -> bool:
    if name not in choices:
        return False
    values = choices[name]
    return values is None or value in values


def not_offered(
    name: str, value: str, model: Any, matched: list[str], choices: dict[str, Choices]
) -> str:
    never = "so this rule never matches"
    if isinstance(model, str):
        own = choices[model]
        if name not in own:
            inputs = ", ".join(own) or "none a rule matches"
            return f"{model} has no {name} input, {never} (its inputs: {inputs})"
        return f"{value!r} is not among the {name} values of {model}: {', '.join(own[name] or [])}"
    offering = [m for m, own in choices.items() if offers(own, name, value)]
    if not offering:
        return f"{value!r} is no model's {name}; they offer {', '.join(all_values(name, choices))}"
    return (
        f"no model offers {name} {value!r} with {' and '.join(matched)}, {never} "
        f"({name} {value!r}: {', '.join(offering)})"
    )


def all_values(name: str, choices: dict[str, Choices]) -> list[str]:
    seen: dict[str, None] = {}
    for own in choices.values():
        seen.update(dict.fromkeys(own.get(name) or []))
    return list(seen)


def hint(name: str, choices: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; its models: {', '.join(choices)}"


def match_branches(catalog: Catalog) -> list[dict[str, Any]]:
    """One schema per model: what a rule's ``match`` may name together with it."""
    branches = []
    for model in catalog:
        choices = match_choices(model)
        properties: dict[str, Any] = {"model": {"const": model.id}}
        properties.update({name: field_schema(choices, name) for name in INPUT_FIELDS})
        branches.append({"properties": properties})
    return branches


def field_schema(choices: Choices, name: str) -> Any:
    if name not in choices:
        return False  # the model has no such input
    values = choices[name]
    return {"type": "string"} if values is None else {"enum": values}


def with_media_names(
    document: dict[str, Any], catalog: Catalog, names: list[str]
) -> dict[str, Any]:
    """The control document, ``effect.media`` the ``names`` of ``--media-dir`` of a kind some
    model of ``catalog`` makes, each kind with those models only (in place). Without any,
    the document keeps accepting no name."""
    rule = document["components"]["schemas"]["MockRuleInput"]
    models: dict[str, list[str]] = {}
    for model in catalog:
        models.setdefault(model.kind, []).append(model.id)
    usable = [name for name in names if kind_of(name) in models]
    if not usable:
        return document
    media = rule["properties"]["effect"]["properties"]["media"]
    media.pop("not", None)
    media["enum"] = usable
    for kind, ids in models.items():
        of_kind = [name for name in usable if kind_of(name) == kind]
        if of_kind:
            effect = {"required": ["media"], "properties": {"media": {"enum": of_kind}}}
            rule.setdefault("allOf", []).append(
                {
                    "if": {"required": ["effect"], "properties": {"effect": effect}},
                    "then": {"properties": {"match": {"properties": {"model": {"enum": ids}}}}},
                }
            )
    return document


def with_match_branches(document: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """The control document, its rule ``match`` branches those of ``catalog`` (in place)."""
    node: Any = document
    for part in RULE_SCHEMA:
        node = node[part]
    node["anyOf"] = match_branches(catalog)
    return document
