"""Hypothesis strategies of inputs ``openapi.yaml`` accepts, for every model of its catalog.

A model's *options* are the input fields with few values: each ``enum`` field, each boolean,
and each number at its bounds and default (a number is also drawn anywhere in its range).
``option_choices`` lists every combination of them the model's input schema accepts (so the
``if``/``then`` of a conditional rule is respected), read from the schema, never from a list
kept here. Valid inputs draw one of those, prompts from one character to ``maxLength``
(unicode included), 0 to ``maxItems`` reference URLs and defaulted fields sometimes left out.

Rendering a file is the costly part of a run (a 4K PNG a few hundred milliseconds, a long 4K
video seconds), so the properties that fetch files draw with ``cheap_media``: options whose
file is small and short are preferred, and a number is never drawn above the option chosen.
The rules broken in turn are in ``breakers``.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, TypeVar

from hypothesis import assume, example
from hypothesis import strategies as st

from mock_runbase.catalog import Model, resolve_ref

from .facts import facts
from .options import options

__all__ = [
    "ID_ALPHABET",
    "NUMBERS",
    "media_cost",
    "number_within",
    "option_choices",
    "properties_of",
    "run_ids",
    "text_within",
    "uri_items",
    "valid_bodies",
    "valid_inputs",
    "with_every_combination",
    "with_every_media_variant",
]

JSON = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
NUMBERS = ("number", "integer")
EXAMPLE_PROMPT = "a lighthouse at dawn"


# --- a model's options ----------------------------------------------------------------------


@cache
def properties_of(model_id: str) -> dict[str, JSON]:
    """The input schema's properties of a model, ``$ref`` resolved."""
    model = model_of(model_id)
    document = facts().document
    return {
        name: resolve_ref(document, prop)
        for name, prop in model.input_schema.get("properties", {}).items()
    }


def model_of(model_id: str) -> Model:
    model = facts().catalog.get(model_id)
    if model is None:
        raise KeyError(f"no model {model_id!r} in the catalog")
    return model


def option_values(prop: JSON) -> list[Any]:
    """The values of an option field worth trying each of; none for other fields."""
    if "const" in prop:
        return [prop["const"]]
    if "enum" in prop:
        return list(prop["enum"])
    if prop.get("type") == "boolean":
        return [False, True]
    if prop.get("type") in NUMBERS:
        return sorted({prop[k] for k in ("minimum", "default", "maximum") if k in prop})
    return []


def placeholder(model_id: str) -> JSON:
    """The shortest required strings (a prompt of one character), to judge options alone."""
    required = model_of(model_id).input_schema.get("required", [])
    return {
        name: "x" * max(1, prop.get("minLength", 1))
        for name, prop in properties_of(model_id).items()
        if name in required and prop.get("type") == "string"
    }


@cache
def option_choices(model_id: str) -> tuple[JSON, ...]:
    """Every combination of the model's option fields that its input schema accepts."""
    values = {n: v for n, p in properties_of(model_id).items() if (v := option_values(p))}
    names = sorted(values)
    validator = facts().spec.input_validators[model_id]
    base = placeholder(model_id)
    combinations = (
        dict(zip(names, chosen, strict=True))
        for chosen in itertools.product(*(values[n] for n in names))
    )
    found = tuple(c for c in combinations if validator.is_valid({**base, **c}))
    if not found:
        raise ValueError(f"{model_id}: its input schema accepts no combination of its options")
    return found


def full(model: Model, fields: JSON) -> JSON:
    return model.with_defaults({**placeholder(model.id), **fields})


def media_cost(model: Model, fields: JSON) -> float:
    """How much there is to render for these options: pixels, times frames for a video."""
    complete = full(model, fields)
    width, height = model.output_size(complete)
    frames = model.duration_s(complete) * model.fps(complete) if model.kind == "video" else 1
    return width * height * max(1.0, frames)


def cheap_first(model: Model, choices: list[JSON]) -> st.SearchStrategy[JSON]:
    """Half the draws from the quarter of ``choices`` with the least to render, half from all."""
    ranked = sorted(choices, key=lambda c: media_cost(model, c))
    cheapest = ranked[: max(1, len(ranked) // 4)]
    return st.one_of(st.sampled_from(cheapest), st.sampled_from(ranked))


# --- valid inputs -------------------------------------------------------------------------


def text_within(schema: JSON) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    short = st.text(min_size=low, max_size=min(high or 64, 64))
    if high is None:
        return short
    full_length = st.sampled_from(["a", "é", "字", "🦊", "ẞ"]).map(lambda c: c * high)
    return st.one_of(short, full_length, st.text(min_size=low, max_size=high))


def number_within(prop: JSON, high: float | None = None) -> st.SearchStrategy[float]:
    """Any number the field accepts, up to ``high`` if given."""
    low, top = prop.get("minimum"), prop.get("maximum")
    if high is not None:
        top = high if top is None else min(top, high)
    if prop.get("type") == "integer":
        return st.integers(low, top)
    return st.floats(low, top, allow_nan=False, allow_infinity=False)


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
    model: Model, *, cheapest: bool = False, references: bool = True, cheap_media: bool = False
) -> st.SearchStrategy[JSON]:
    """Inputs the spec accepts: any combination of options (only those at the model's lowest
    price when ``cheapest``; those with little to render first when ``cheap_media``), numbers
    anywhere in range, any prompt length, reference URLs, defaulted fields sometimes left out."""
    choices = list(option_choices(model.id))
    if cheapest:
        floor = facts().cheapest(model)
        choices = [c for c in choices if model.cost_usd(full(model, c)) == floor]
    picked = cheap_first(model, choices) if cheap_media else st.sampled_from(choices)
    properties = properties_of(model.id)
    required = model.input_schema.get("required", [])
    numbers = {n: p for n, p in properties.items() if p.get("type") in NUMBERS}
    validator = facts().spec.input_validators[model.id]

    @st.composite
    def build(draw: st.DrawFn) -> JSON:
        chosen: JSON = dict(draw(picked))
        for name, prop in numbers.items():  # a price per second is exact at any length
            if not cheapest and name in chosen and draw(st.booleans()):
                chosen[name] = draw(number_within(prop, chosen[name] if cheap_media else None))
        for name, prop in properties.items():
            if name in chosen:
                continue
            if prop.get("type") == "string" and (name in required or draw(st.booleans())):
                chosen[name] = draw(text_within(prop))
            elif prop.get("type") == "array" and references and draw(st.booleans()):
                items = resolve_ref(facts().document, prop.get("items", {}))
                chosen[name] = draw(st.lists(uri_items(items), max_size=prop.get("maxItems", 4)))
        for name, default in model.defaults.items():
            if chosen.get(name) == default and draw(st.booleans()):
                trimmed = {k: v for k, v in chosen.items() if k != name}
                if validator.is_valid(trimmed):
                    chosen = trimmed
        assume(validator.is_valid(chosen))  # a conditional rule on a number or a string
        return chosen

    return build()


def valid_bodies(
    *, cheapest: bool = False, references: bool = True, cheap_media: bool = False
) -> st.SearchStrategy[JSON]:
    """A valid body of any model (each as likely), or of the cheapest ones when ``cheapest``."""
    models = list(facts().catalog)
    if cheapest:
        floor = min(facts().cheapest(m) for m in models)
        models = [m for m in models if facts().cheapest(m) == floor]
    inputs = {
        m.id: valid_inputs(m, cheapest=cheapest, references=references, cheap_media=cheap_media)
        for m in models
    }

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


# --- explicit examples ----------------------------------------------------------------------


def every_combination() -> Iterator[JSON]:
    """One body per model and per combination of its options the schema accepts."""
    for model in facts().catalog:
        for fields in option_choices(model.id):
            yield {"model": model.id, "input": {"prompt": EXAMPLE_PROMPT, **fields}}


def every_media_variant() -> Iterator[JSON]:
    """One body per model and per kind of file it makes (a video with or without sound, at
    each frame rate): the options with the least to render."""
    for model in facts().catalog:
        variants: dict[tuple[bool, int], JSON] = {}
        ranked = sorted(option_choices(model.id), key=lambda c: media_cost(model, c))
        for fields in ranked:
            complete = full(model, fields)
            variants.setdefault((model.has_audio(complete), model.fps(complete)), fields)
        for fields in variants.values():
            yield {"model": model.id, "input": {"prompt": EXAMPLE_PROMPT, **fields}}


def with_examples(test: F, bodies: Iterator[JSON]) -> F:
    if options().live:  # each one is a paid run
        return test
    for body in bodies:
        test = example(body=body)(test)
    return test


def with_every_combination(test: F) -> F:
    """Try every model's every accepted combination of options explicitly, on top of the
    random examples (not when live: each one is a paid run)."""
    return with_examples(test, every_combination())


def with_every_media_variant(test: F) -> F:
    """Try each model's cheapest file of every kind it makes explicitly, on top of the random
    examples (not when live: each one is a paid run)."""
    return with_examples(test, every_media_variant())
