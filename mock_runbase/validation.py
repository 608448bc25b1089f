"""Turn a create-run request body into a validated input, or the Runbase error for it.

Order (the API's, as far as the docs tell): JSON parse (``invalid_json``), the shared
envelope (``missing_model``/``missing_input``, from ``x-runbase-error-code`` in the spec),
the catalog (``model_not_found``), then the model's own input schema (``invalid_input``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from mock_runbase.catalog import JSON, Model, resolve_ref
from mock_runbase.errors import RunbaseError
from mock_runbase.spec import ENVELOPE_POINTER, Spec

__all__ = ["ValidatedRequest", "parse_create_request"]

MAX_ERRORS = 5  # failing rules named in one message
SHOWN_CHARS = 40  # of a value sent, the most a message repeats
MAX_CUSTOM_MESSAGE = 200


class ValidatedRequest(NamedTuple):
    model: Model
    input: JSON
    """The input as sent, with the schema's defaults filled in."""


def parse_create_request(spec: Spec, raw: bytes) -> ValidatedRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RunbaseError(400, "invalid_json", "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RunbaseError(400, "invalid_json", "Request body must be a JSON object")
    model_id = body.get("model")
    if type(model_id) is str:
        whole = spec.request_validators.get(model_id)
        if whole is not None and whole.is_valid(body):
            model = spec.catalog.get(model_id)
            if model is not None:
                return ValidatedRequest(model, model.with_defaults(body["input"]))
    # not valid (or a model not in the catalog): each check in turn, for its error's code
    if not spec.envelope.is_valid(body):  # a yes/no check is faster; errors only on a no
        code, message = envelope_failure(spec, list(spec.envelope.iter_errors(body)))
        raise RunbaseError(400, code, message)
    model = spec.catalog.get(body["model"])
    if model is None:
        known = ", ".join(m.id for m in spec.catalog)
        raise RunbaseError(
            400, "model_not_found", f"No model with ID {shown(body['model'])} (known: {known})"
        )
    validator = spec.input_validators[model.id]
    if not validator.is_valid(body["input"]):
        errors = list(validator.iter_errors(body["input"]))
        raise RunbaseError(400, "invalid_input", describe_input_errors(spec, model, errors))
    return ValidatedRequest(model=model, input=model.with_defaults(body["input"]))


def envelope_failure(spec: Spec, errors: list[Any]) -> tuple[str, str]:
    """The code of the first failing field, in the order of the envelope's ``required``.

    Codes come from the spec's ``x-runbase-error-code`` on each field.
    """
    envelope = resolve_ref(spec.document, {"$ref": ENVELOPE_POINTER})
    failing = set()
    for error in errors:
        if error.instance_path:
            failing.add(str(error.instance_path[0]))
        else:  # a ``required`` failure sits at the root; the field is in the message
            failing.update(n for n in envelope["required"] if f'"{n}"' in error.message)
    field = next((n for n in envelope["required"] if n in failing), envelope["required"][0])
    prop = envelope["properties"][field]
    expected = {"object": "an object", "string": "a string"}.get(prop.get("type"), "valid")
    return prop["x-runbase-error-code"], f"`{field}` is required and must be {expected}"


def describe_input_errors(spec: Spec, model: Model, errors: list[Any]) -> str:
    """A message naming each failing field (the first ``MAX_ERRORS``), what it allows and,
    in short, what was sent: its length is bounded, whatever the size of the input."""
    parts = [describe_one(spec, error) for error in errors[:MAX_ERRORS]]
    more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
    return f"Invalid input for {model.id}: " + "; ".join(parts) + more


def describe_one(spec: Spec, error: Any) -> str:
    """``input.<field>: <what is allowed>[ when <condition>][, got <value>][ (<why>)]``."""
    where = ["input", *(shown_key(p) for p in error.instance_path)]
    kind = error.kind.name
    facts = error.kind.as_dict()
    condition, why = branch_context(spec.document, list(error.schema_path), where)
    if kind == "required":
        where.append(shown_key(facts["property"]))
        requirement, got = "is required", None
    else:
        requirement, got = requirement_of(kind, facts, error)
    text = f"{'.'.join(where)}: {requirement}{condition}"
    if got is not None:
        text += f", got {got}"
    return f"{text} ({why})" if why else text


def requirement_of(kind: str, facts: dict[str, Any], error: Any) -> tuple[str, str | None]:
    """What the keyword ``kind`` allows, and how to show what was sent instead."""
    value = error.instance
    got = shown(value)
    limit = facts.get("limit")
    if kind == "enum":
        return f"must be one of {', '.join(map(json_text, facts['options']))}", got
    if kind == "const":
        return f"must be {json_text(facts['expected_value'])}", got
    if kind == "type":
        return f"must be {' or '.join(TYPE_NAMES.get(t, t) for t in facts['types'])}", got
    if kind in LENGTH_RULES:
        counted = got if len(value) > SHOWN_CHARS else f"{got} ({len(value)} characters)"
        return f"{LENGTH_RULES[kind]} {plural(limit, 'character')}", counted
    if kind in COUNT_RULES:
        noun = "item" if isinstance(value, list) else "field"
        return f"{COUNT_RULES[kind]} {plural(limit, noun)}", plural(len(value), noun)
    if kind in NUMBER_RULES:
        return f"{NUMBER_RULES[kind]} {json_text(limit)}", got
    if kind == "format":
        return f"must be a valid {facts['format']}", got
    if kind == "pattern":
        return f"must match the pattern {shown(facts['pattern'])}", got
    if kind == "multipleOf":
        return f"must be a multiple of {json_text(facts['multiple_of'])}", got
    if kind == "uniqueItems":
        return "must not repeat an item", None
    if kind == "additionalProperties":
        names = [shown_key(name) for name in facts["unexpected"]]
        listed = ", ".join(names[:MAX_ERRORS]) + (", ..." if len(names) > MAX_ERRORS else "")
        return f"allows no other fields (unexpected: {listed})", None
    if "message" in facts:  # our own keywords (x-runbase-max-bytes): their message says it all
        return str(facts["message"])[:MAX_CUSTOM_MESSAGE], None
    return f"does not match the model's input schema (`{kind}`)", got


def branch_context(document: Any, schema_path: list[Any], path: list[str]) -> tuple[str, str]:
    """For a rule inside a ``then`` branch: the ``if`` it depends on (`` when input.<field>
    is <const>``) and the branch's ``description``; else empty strings."""
    if "then" not in schema_path:
        return "", ""
    at = len(schema_path) - 1 - schema_path[::-1].index("then")
    branch = schema_at(document, schema_path[: at + 1])
    condition = schema_at(document, [*schema_path[:at], "if"])
    why = branch.get("description", "") if isinstance(branch, dict) else ""
    depth = instance_depth(schema_path[at + 1 :])
    owner = path[: len(path) - depth] if depth else path
    tests = []
    properties = condition.get("properties", {}) if isinstance(condition, dict) else {}
    for name, rule in properties.items():
        field = ".".join([*owner, shown_key(name)])
        if isinstance(rule, dict) and "const" in rule:
            tests.append(f"{field} is {json_text(rule['const'])}")
        elif isinstance(rule, dict) and "enum" in rule:
            tests.append(f"{field} is one of {', '.join(map(json_text, rule['enum']))}")
    return (f" when {' and '.join(tests)}" if tests else ""), str(why)


def instance_depth(schema_steps: list[Any]) -> int:
    """How many levels of the instance the schema path ``schema_steps`` goes down."""
    depth, index = 0, 0
    while index < len(schema_steps):
        step = schema_steps[index]
        if step in ("properties", "patternProperties", "prefixItems"):
            depth, index = depth + 1, index + 2
            continue
        if step in ("items", "additionalProperties"):
            depth += 1
        index += 1
    return depth


def schema_at(document: Any, path: list[str | int]) -> Any:
    node = document
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def shown(value: Any) -> str:
    """``value`` as JSON, cut to a short prefix when long: ``"abc…" (4001 characters)``, an
    array or object by its size."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return json_text(value)
        return f'{json_text(value[:SHOWN_CHARS])[:-1]}…" ({len(value)} characters)'
    text = json_text(value)
    if len(text) <= SHOWN_CHARS:
        return text
    if isinstance(value, list):
        return f"an array of {plural(len(value), 'item')}"
    if isinstance(value, dict):
        return f"an object of {plural(len(value), 'field')}"
    return text[:SHOWN_CHARS] + "…"


def shown_key(key: Any) -> str:
    """A field name or array index of a path, cut like a value when long."""
    text = str(key)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
LENGTH_RULES = {"minLength": "must be at least", "maxLength": "must be at most"}
COUNT_RULES = {
    "minItems": "must have at least",
    "maxItems": "must have at most",
    "minProperties": "must have at least",
    "maxProperties": "must have at most",
}
NUMBER_RULES = {
    "minimum": "must be at least",
    "maximum": "must be at most",
    "exclusiveMinimum": "must be more than",
    "exclusiveMaximum": "must be less than",
}
