"""Each rule of ``openapi.yaml`` broken in turn (a ``Breaker``), with the error code the docs
give for that rule, for every model of the catalog.

Breakers come from the schemas' own keywords: ``required``, ``minLength``/``maxLength``,
``enum``, ``type``, ``minimum``/``maximum`` (and their exclusive forms), ``maxItems``,
``x-runbase-max-bytes``, the ``if``/``then`` of a conditional rule and the envelope's
``x-runbase-error-code``. Each starts from a valid input of the model and breaks one rule.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import strategies as st

from mock_runbase.catalog import Model, resolve_ref

from .facts import facts
from .strategies import NUMBERS, properties_of, uri_items, valid_bodies, valid_inputs

__all__ = [
    "BREAKERS",
    "MISSING_API_KEY",
    "Breaker",
    "Request",
    "any_request",
    "breakers",
    "oversized_data_uri",
]

JSON = dict[str, Any]
INVALID_JSON, MODEL_NOT_FOUND, INVALID_INPUT = "invalid_json", "model_not_found", "invalid_input"
MISSING_API_KEY = "missing_api_key"
WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=20),
    "integer": st.integers(),
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: not x.is_integer()
    ),  # 2.0 is an integer
    "null": st.none(),
    "boolean": st.booleans(),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
}
OUTSIDE_A_TYPE = {"number": {"number", "integer"}}  # an integer is a number too
BOUNDS = {  # keyword: (a bound from below, the bound itself accepted, what is accepted)
    "minimum": (True, True, ">="),
    "exclusiveMinimum": (True, False, ">"),
    "maximum": (False, True, "<="),
    "exclusiveMaximum": (False, False, "<"),
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


def breakers() -> list[Breaker]:
    found = envelope_breakers() + auth_breakers()
    for model in facts().catalog:
        found += input_breakers(model)
    codes = set(facts().create.codes) | set(facts().get.codes)
    unknown = {b.code for b in found} - codes
    assert not unknown, f"breakers expect codes the spec does not document: {unknown}"
    return found


@cache
def BREAKERS() -> list[Breaker]:
    return breakers()


@cache
def bodies_without_references() -> st.SearchStrategy[JSON]:
    """Valid bodies of any model, built once: the start of most broken requests."""
    return valid_bodies(references=False)


# --- a model's input ------------------------------------------------------------------------


def with_input(model: Model, change: Callable[[JSON, st.DrawFn], JSON]) -> Callable[..., Request]:
    inputs = valid_inputs(model, references=False)

    def build(draw: st.DrawFn) -> Request:
        return Request({"model": model.id, "input": change(draw(inputs), draw)})

    return build


def input_breakers(model: Model) -> list[Breaker]:
    out: list[Breaker] = []

    def add(name: str, rule: str, change: Callable[[JSON, st.DrawFn], JSON]) -> None:
        label = f"{model.id}: {name}"
        out.append(Breaker(label, rule, INVALID_INPUT, "create", with_input(model, change)))

    for name in model.input_schema.get("required", []):
        add(f"input.{name} missing", f"input.{name} is required", drop(name))
    for name, prop in properties_of(model.id).items():
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
            add(f"input.{name} not {a(kind)}", f"input.{name} is {a(kind)}",
                put(name, wrong_type(kind)))  # fmt: skip
        if "enum" in prop:
            members = prop["enum"]
            shown = ", ".join(map(str, members))
            add(f"input.{name} not one of its values", f"input.{name}: one of {shown}",
                put(name, not_one_of(members)))  # fmt: skip
        if kind in NUMBERS:
            for label, rule, values in out_of_range(name, prop):
                add(label, rule, put(name, values))
        if kind == "array":
            array_breakers(name, prop, add)
    conditional_breakers(model, add)
    return out


def wrong_type(kind: str) -> st.SearchStrategy[Any]:
    """Values of every JSON type but ``kind`` (and but the types ``kind`` takes in)."""
    inside = OUTSIDE_A_TYPE.get(kind, {kind})
    return st.one_of(*(s for t, s in WRONG_TYPES.items() if t not in inside))


def not_one_of(members: list[Any]) -> st.SearchStrategy[Any]:
    """Values outside an enum, its members with their case swapped first (``4k`` for ``4K``)."""
    near = st.sampled_from(members).map(lambda v: v.swapcase() if isinstance(v, str) else v)
    anything: st.SearchStrategy[Any] = st.one_of(near, st.text(max_size=8), st.integers())
    return anything.filter(lambda value: value not in members)


def out_of_range(name: str, prop: JSON) -> list[tuple[str, str, st.SearchStrategy[Any]]]:
    """For each bound of a number: the numbers past it, from just past to far past."""
    integer = prop.get("type") == "integer"
    found = []
    for keyword, (below, inclusive, accepted) in BOUNDS.items():
        if keyword not in prop:
            continue
        bound = prop[keyword]
        values: st.SearchStrategy[Any]
        if integer and below:
            values = st.integers(max_value=math.ceil(bound) - 1 if inclusive else math.floor(bound))
        elif integer:
            values = st.integers(min_value=math.floor(bound) + 1 if inclusive else math.ceil(bound))
        elif below:
            values = finite(max_value=bound, exclude_max=inclusive)
        else:
            values = finite(min_value=bound, exclude_min=inclusive)
        rule = f"input.{name} {accepted} {bound}"
        found.append((f"input.{name} past its {keyword}", rule, values))
    return found


def finite(**bounds: Any) -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


def array_breakers(name: str, prop: JSON, add: Callable[..., None]) -> None:
    items = resolve_ref(facts().document, prop.get("items", {}))
    if "maxItems" in prop:
        high = prop["maxItems"]
        many = st.lists(uri_items(items), min_size=high + 1, max_size=high + 4)
        add(f"input.{name} more than {high} items", f"input.{name}: at most {high} items",
            put(name, many))  # fmt: skip
    limit = items.get("x-runbase-max-bytes")
    if limit is not None:
        big = st.just(limit + 1).map(lambda size: [oversized_data_uri(size)])
        add(f"input.{name} item over {limit} bytes", f"input.{name}: each at most {limit} bytes",
            put(name, big))  # fmt: skip


@cache
def oversized_data_uri(size: int) -> str:
    """A ``data:`` URI of exactly ``size`` bytes, unencoded: the smallest request that carries
    them (base64 adds a third, which would take a 30 MB item past a 32 MiB body limit)."""
    return "data:image/png," + "A" * size


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
        members = properties_of(model.id)[name].get("enum", [])
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


# --- the envelope and the key ---------------------------------------------------------------


def envelope_breakers() -> list[Breaker]:
    envelope = facts().schema("RunEnvelope")
    out: list[Breaker] = []
    body = bodies_without_references()
    for name in envelope["required"]:
        prop = envelope["properties"][name]
        code = prop["x-runbase-error-code"]
        others = wrong_type(prop.get("type", ""))

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
    bodies = bodies_without_references()
    out = []
    for endpoint in ("create", "get"):

        def build(draw: st.DrawFn, endpoint: str = endpoint) -> Request:
            header = draw(headers)
            sent = {} if header is None else {"Authorization": header}
            body = draw(bodies) if endpoint == "create" else None
            return Request(body, sent, with_key=False)

        out.append(Breaker(f"{endpoint}: no usable Authorization", rule, MISSING_API_KEY,
                           endpoint, build))  # fmt: skip
    return out


# --- anything at all ------------------------------------------------------------------------


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
    body = draw(st.one_of(st.binary(max_size=80), JSON_VALUES, bodies_without_references()))
    return "create", Request(body, headers, with_key=header == "key")
