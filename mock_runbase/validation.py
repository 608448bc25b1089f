"""Turn a create-run request body into a validated input, or the Runbase error for it.

Order (the API's, as far as the docs tell): JSON parse (``invalid_json``), the shared
envelope (``missing_model``/``missing_input``, from ``x-runbase-error-code`` in the spec),
the catalog (``model_not_found``), then the model's own input schema (``invalid_input``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from mock_runbase.catalog import JSON, Model, resolve_ref
from mock_runbase.errors import RunbaseError
from mock_runbase.spec import ENVELOPE_POINTER, Spec

__all__ = ["ValidatedRequest", "parse_create_request"]

MAX_ENUM_IN_MESSAGE = 12


@dataclass(frozen=True)
class ValidatedRequest:
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
    if not spec.envelope.is_valid(body):  # a yes/no check is faster; errors only on a no
        code, message = envelope_failure(spec, list(spec.envelope.iter_errors(body)))
        raise RunbaseError(400, code, message)
    model = spec.catalog.get(body["model"])
    if model is None:
        known = ", ".join(m.id for m in spec.catalog)
        raise RunbaseError(
            400, "model_not_found", f"No model with ID {body['model']!r} (known: {known})"
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
    """A human message naming each failing field and the rule it breaks."""
    parts = [describe_one(spec, error) for error in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"Invalid input for {model.id}: " + "; ".join(parts) + more


def describe_one(spec: Spec, error: Any) -> str:
    path = ["input", *(str(p) for p in error.instance_path)]
    keyword = error.schema_path[-1] if error.schema_path else None
    schema_node = schema_at(spec.document, error.schema_path[:-1])
    rule = error.message
    if keyword == "required":
        missing = next((n for n in schema_node.get("required", []) if f'"{n}"' in rule), None)
        if missing is not None:
            path.append(missing)
            rule = "is required"
    elif keyword == "enum":
        allowed = schema_node["enum"][:MAX_ENUM_IN_MESSAGE]
        rule = f"{short_repr(error.instance)} is not one of {', '.join(map(str, allowed))}"
    if "then" in error.schema_path:
        branch = schema_at(spec.document, error.schema_path[: error.schema_path.index("then") + 1])
        if isinstance(branch, dict) and "description" in branch:
            rule = f"{rule} ({branch['description']})"
    return f"{'.'.join(path)}: {rule}"


def schema_at(document: Any, path: list[str | int]) -> Any:
    node = document
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def short_repr(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."
