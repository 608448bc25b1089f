"""Hypothesis strategies built from ``openapi.yaml``: inputs the spec accepts, and each rule
of it broken in turn (a ``Breaker``), with the error code the docs give for that rule.

Valid inputs walk every combination the model's size table covers (which is exactly what its
input schema accepts), prompts from one character to ``maxLength`` (unicode included) and
0 to ``maxItems`` reference URLs. Breakers come from the schemas' own keywords: ``required``,
``minLength``/``maxLength``, ``enum``, ``type``, ``maxItems``, ``x-runbase-max-bytes``, the
``if``/``then`` of a conditional rule and the envelope's ``x-runbase-error-code``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from hypothesis import example
from hypothesis import strategies as st

from mock_runbase.catalog import Model, resolve_ref

from .facts import facts
from .options import options

__all__ = [
    "Breaker",
    "any_request",
    "breakers",
    "run_ids",
    "valid_bodies",
    "valid_inputs",
    "with_every_combination",
]

JSON = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
INVALID_JSON, MODEL_NOT_FOUND, INVALID_INPUT = "invalid_json", "model_not_found", "invalid_input"
MISSING_API_KEY = "missing_api_key"
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=20),
    "integer": st.integers(),
    "null": st.none(),
    "boolean": st.booleans(),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
}


@dataclass(frozen=True)
class Request:
    """What a breaker sends: a body (JSON value or raw bytes), headers, and the key or not."""

    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    with_key: bool = True


@dataclass(frozen=True)
class Breaker:
    name: str
    rule: str
    code: str
    endpoint: str  # "create" or "get"
    build: Callable[[st.DrawFn], Request] = field(repr=False)

    def strategy(self) -> st.SearchStrategy[Request]:
        return st.composite(lambda draw: self.build(draw))()


# --- valid inputs -------------------------------------------------------------------------


def text_within(schema: JSON) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    short = st.text(min_size=low, max_size=min(high or 64, 64))
    if high is None:
        return short
    full = st.sampled_from(["a", "é", "字", "🦊", "ẞ"]).map(lambda c: c * high)
    return st.one_of(short, full, st.text(min_size=low, max_size=high))


def uri_items(schema: JSON) -> st.SearchStrategy[str]:
    https = st.text(ID_ALPHABET, min_size=1, max_size=12).map(
        lambda s: f"https://example.com/reference/{s}.png"
    )
    if "x-runbase-max-bytes" not in schema:
        return https
    small = st.binary(min_size=1, max_size=48).map(
        lambda b: "data:image/png;base64," + base64.b64encode(b).decode()
    )
    return st.one_of(https, small)


def valid_inputs(
    model: Model, *, cheapest: bool = False, references: bool = True
) -> st.SearchStrategy[JSON]:
    """Inputs the spec accepts: every covered combination (only the cheapest ones when
    ``cheapest``), any prompt length, reference URLs, defaulted fields sometimes left out."""
    combos = [fields for fields, _ in model.size_combinations()]
    if cheapest:
        floor = facts().cheapest(model)
        combos = [c for c in combos if model.cost_usd(model.with_defaults(c)) == floor]
    properties = {
        name: resolve_ref(facts().document, prop)
        for name, prop in model.input_schema.get("properties", {}).items()
    }
    validator = facts().spec.input_validators[model.id]

    @st.composite
    def build(draw: st.DrawFn) -> JSON:
        chosen: JSON = dict(draw(st.sampled_from(combos)))
        for name, prop in properties.items():
            if name in chosen:
                continue
            if prop.get("type") == "string" and name in model.input_schema.get("required", []):
                chosen[name] = draw(text_within(prop))
            elif prop.get("type") == "array" and references and draw(st.booleans()):
                items = resolve_ref(facts().document, prop.get("items", {}))
                chosen[name] = draw(st.lists(uri_items(items), max_size=prop.get("maxItems", 4)))
        for name, default in model.defaults.items():
            if chosen.get(name) == default and draw(st.booleans()):
                trimmed = {k: v for k, v in chosen.items() if k != name}
                if validator.is_valid(trimmed):
                    chosen = trimmed
        return chosen

    return build()


def valid_bodies(*, cheapest: bool = False, references: bool = True) -> st.SearchStrategy[JSON]:
    models = list(facts().catalog)
    if cheapest:
        floor = min(facts().cheapest(m) for m in models)
        models = [m for m in models if facts().cheapest(m) == floor]
    inputs = {m.id: valid_inputs(m, cheapest=cheapest, references=references) for m in models}

    @st.composite
    def body(draw: st.DrawFn) -> JSON:
        model = draw(st.sampled_from(sorted(inputs)))
        return {"model": model, "input": draw(inputs[model])}

    return body()


def run_ids() -> st.SearchStrategy[str]:
    """Ids no server has handed out: ``run_`` ones and any URL-safe text up to the maximum."""
    param = resolve_ref(facts().document, {"$ref": "#/components/parameters/RunId"})["schema"]
    shaped = st.text(ID_ALPHABET[:62], min_size=8, max_size=30).map(lambda s: f"run_{s}")
    anything = st.text(ID_ALPHABET, min_size=param.get("minLength", 1), max_size=param["maxLength"])
    return st.one_of(shaped, anything)


def every_combination() -> Iterator[JSON]:
    """One body per model and per combination its size table covers (every ratio x size)."""
    for model in facts().catalog:
        for fields, _ in model.size_combinations():
            yield {"model": model.id, "input": {"prompt": "a lighthouse at dawn", **fields}}


def with_every_combination(test: F) -> F:
    """Try every combination explicitly, on top of the random examples (not when live: each
    one is a paid run)."""
    if options().live:
        return test
    for body in every_combination():
        test = example(body=body)(test)
    return test


# --- rules broken in turn -----------------------------------------------------------------


def breakers() -> list[Breaker]:
    found = envelope_breakers() + auth_breakers()
    for model in facts().catalog:
        found += input_breakers(model)
    codes = set(facts().create.codes) | set(facts().get.codes)
    unknown = {b.code for b in found} - codes
    assert not unknown, f"breakers expect codes the spec does not document: {unknown}"
    return found


def with_input(model: Model, change: Callable[[JSON, st.DrawFn], JSON]) -> Callable[..., Request]:
    def build(draw: st.DrawFn) -> Request:
        valid = draw(valid_inputs(model, references=False))
        return Request({"model": model.id, "input": change(valid, draw)})

    return build


def input_breakers(model: Model) -> list[Breaker]:
    schema = model.input_schema
    out: list[Breaker] = []

    def add(name: str, rule: str, change: Callable[[JSON, st.DrawFn], JSON]) -> None:
        label = f"{model.id}: {name}"
        out.append(Breaker(label, rule, INVALID_INPUT, "create", with_input(model, change)))

    for name in schema.get("required", []):
        add(f"input.{name} missing", f"input.{name} is required", drop(name))
    for name, raw in schema.get("properties", {}).items():
        prop = resolve_ref(facts().document, raw)
        kind = prop.get("type")
        if kind == "string" and prop.get("minLength", 0) > 0:
            low = prop["minLength"]
            add(f"input.{name} too short", f"input.{name}: at least {low} characters",
                put(name, st.just("x" * (low - 1))))  # fmt: skip
        if kind == "string" and "maxLength" in prop:
            high = prop["maxLength"]
            longer = st.integers(high + 1, high + 64).map(lambda n: "p" * n)
            add(f"input.{name} too long", f"input.{name}: at most {high} characters",
                put(name, longer))  # fmt: skip
        if kind in WRONG_TYPES:
            others = st.one_of(*(s for t, s in WRONG_TYPES.items() if t != kind))
            add(f"input.{name} not {a(kind)}", f"input.{name} is {a(kind)}", put(name, others))
        if "enum" in prop:
            members = prop["enum"]
            add(f"input.{name} not one of its values", f"input.{name}: one of {', '.join(members)}",
                put(name, not_one_of(members)))  # fmt: skip
        if kind == "array":
            array_breakers(name, prop, add)
    conditional_breakers(model, add)
    return out


def not_one_of(members: list[Any]) -> st.SearchStrategy[Any]:
    """Values outside an enum, its members with their case swapped first (``4k`` for ``4K``)."""
    near = st.sampled_from(members).map(lambda v: v.swapcase() if isinstance(v, str) else v)
    anything: st.SearchStrategy[Any] = st.one_of(near, st.text(max_size=8), st.integers())
    return anything.filter(lambda value: value not in members)


def array_breakers(name: str, prop: JSON, add: Callable[..., None]) -> None:
    items = resolve_ref(facts().document, prop.get("items", {}))
    if "maxItems" in prop:
        high = prop["maxItems"]
        many = st.lists(uri_items(items), min_size=high + 1, max_size=high + 4)
        add(f"input.{name} more than {high} items", f"input.{name}: at most {high} items",
            put(name, many))  # fmt: skip
    limit = items.get("x-runbase-max-bytes")
    if limit is not None:
        payload = base64.b64encode(b"\0" * (limit + 1)).decode()
        big = st.just(["data:image/png;base64," + payload])
        add(f"input.{name} item over {limit} bytes", f"input.{name}: each at most {limit} bytes",
            put(name, big))  # fmt: skip


def conditional_breakers(model: Model, add: Callable[..., None]) -> None:
    """``if`` (fields with ``const`` values) met and ``then`` broken, one way at a time."""
    schema = model.input_schema
    condition, then = schema.get("if"), schema.get("then")
    if not condition or not then:
        return
    forced = {k: v["const"] for k, v in condition.get("properties", {}).items() if "const" in v}
    rule = then.get("description", f"when {forced}: {then}")
    when = ", ".join(f"{k}={v}" for k, v in forced.items())
    for name in then.get("required", []):
        add(f"{when} without {name}", rule, lambda i, d, n=name: {**drop(n)(i, d), **forced})
    for name, sub in then.get("properties", {}).items():
        members = resolve_ref(facts().document, schema["properties"][name]).get("enum", [])
        outside = [v for v in members if v not in sub.get("enum", members)]
        if outside:
            change = put(name, st.sampled_from(outside), forced)
            add(f"{when} with another {name}", rule, change)


def a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def drop(name: str) -> Callable[[JSON, st.DrawFn], JSON]:
    return lambda valid, draw: {k: v for k, v in valid.items() if k != name}


def put(
    name: str, values: st.SearchStrategy[Any], also: JSON | None = None
) -> Callable[[JSON, st.DrawFn], JSON]:
    return lambda valid, draw: {**valid, **(also or {}), name: draw(values)}


def envelope_breakers() -> list[Breaker]:
    envelope = facts().schema("RunEnvelope")
    out: list[Breaker] = []
    body = valid_bodies(references=False)
    for name in envelope["required"]:
        prop = envelope["properties"][name]
        code = prop["x-runbase-error-code"]
        others = st.one_of(*(s for t, s in WRONG_TYPES.items() if t != prop.get("type")))

        def missing(draw: st.DrawFn, n: str = name) -> Request:
            return Request({k: v for k, v in draw(body).items() if k != n})

        def wrong(draw: st.DrawFn, n: str = name, o: Any = others) -> Request:
            return Request({**draw(body), n: draw(o)})

        rule = f"`{name}` is required and is {a(prop.get('type', 'value'))}"
        out.append(Breaker(f"{name} missing", rule, code, "create", missing))
        out.append(
            Breaker(f"{name} not {a(prop.get('type', 'value'))}", rule, code, "create", wrong)
        )
    names = st.text(min_size=1, max_size=40).filter(lambda m: facts().catalog.get(m) is None)

    def unknown_model(draw: st.DrawFn) -> Request:
        return Request({**draw(body), "model": draw(names)})

    def not_json(draw: st.DrawFn) -> Request:
        text = json.dumps(draw(body))
        raw = draw(st.one_of(st.just(text[: draw(st.integers(0, len(text) - 1))].encode()),
                             st.binary(max_size=64)))  # fmt: skip
        try:
            json.loads(raw)
        except ValueError:
            return Request(raw)
        return Request(raw + b"}")  # now it is not JSON

    out.append(Breaker("unknown model", "model names a catalog model", MODEL_NOT_FOUND, "create",
                       unknown_model))  # fmt: skip
    out.append(Breaker("body not JSON", "the body is JSON", INVALID_JSON, "create", not_json))
    return out


def auth_breakers() -> list[Breaker]:
    """A missing header, or one not of the form ``Bearer <key>`` (documented: missing_api_key)."""
    key = "sk-contract-" + secrets.token_hex(4)
    headers = st.sampled_from(
        [None, "", "Bearer", key, f"Basic {key}", f"Token {key}", f"Bearer {key} x"]
    )
    rule = "Authorization: Bearer <key> on every request"
    out = []
    for endpoint in ("create", "get"):

        def build(draw: st.DrawFn, endpoint: str = endpoint) -> Request:
            header = draw(headers)
            sent = {} if header is None else {"Authorization": header}
            body = draw(valid_bodies(references=False)) if endpoint == "create" else None
            return Request(body, sent, with_key=False)

        out.append(Breaker(f"{endpoint}: no usable Authorization", rule, MISSING_API_KEY,
                           endpoint, build))  # fmt: skip
    return out


# --- anything at all ------------------------------------------------------------------------


@cache
def BREAKERS() -> list[Breaker]:
    return breakers()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def any_request(draw: st.DrawFn) -> tuple[str, Request]:
    """Either documented operation, with any body and any Authorization header."""
    if draw(st.booleans()):
        breaker = draw(st.sampled_from(BREAKERS()))
        return breaker.endpoint, draw(breaker.strategy())
    endpoint = draw(st.sampled_from(["create", "get"]))
    printable = st.from_regex(r"[!-~]([ -~]{0,28}[!-~])?", fullmatch=True)
    header = draw(st.one_of(st.none(), printable, st.just("key")))
    headers = {} if header in (None, "key") else {"Authorization": header}
    if endpoint == "get":
        return "get", Request(None, headers, with_key=header == "key")
    body = draw(st.one_of(st.binary(max_size=80), JSON_VALUES, valid_bodies(references=False)))
    return "create", Request(body, headers, with_key=header == "key")
