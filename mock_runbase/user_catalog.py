"""A user's own models (``serve --models FILE``): new models, and overrides of the spec's.

The file has one top-level key, ``models``: a model id (``provider/name``) to its data, in the
shape ``openapi.yaml`` keeps it: the input's JSON Schema under ``input``, the rest as in
``x-runbase-model`` (see ``catalog``)::

    models:
      acme/new-image:                 # a new model: every key (video too, for a video)
        input: {type: object, required: [prompt], properties: {prompt: {type: string}}}
        name: Acme New Image
        kind: image
        costUsd: 10000
        outputSize: [512, 512]
        timing: {pendingMs: 200, processingMs: 1000}
      openai/gpt-image-2:             # an override: only the keys given change
        costUsd: {by: resolution, values: {1K: 40000, 2K: 60000, 4K: 100000}}
        input: {properties: {image_urls: {maxItems: 2}}}

An override replaces whole keys of ``x-runbase-model`` (``kind`` cannot change) and merges
``input`` into the model's input schema: mappings key by key, any other value replaced.

``merge_models`` is pure: it returns a new document with the new ``<Name>RunRequest`` and
``<Name>Input`` schemas, their ``CreateRunRequest.oneOf`` branches and the changed schemas, so
the catalog, the validators and their messages work on it unchanged. ``check_user_models``
then compiles each model the file names and runs ``catalog.check_model`` on it. Every error is
a ``ModelsFileError`` naming the file, the model and the field.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mock_runbase.catalog import CatalogError, check_model, model_from_branch
from mock_runbase.models_file import ModelsFileError, read_models_file

__all__ = [
    "MODEL_KEYS",
    "ModelsFileError",
    "apply_models_file",
    "check_user_models",
    "merge_models",
    "read_models_file",
]

JSON = dict[str, Any]
Compile = Callable[[JSON, JSON], Any]
"""(document, schema) -> a validator with ``is_valid``; raises ValueError for a bad schema."""

FACT_KEYS = ("name", "kind", "costUsd", "outputSize", "video", "timing")
MODEL_KEYS = ("input", *FACT_KEYS)
NEW_MODEL_NEEDS = ("input", "name", "kind", "costUsd", "outputSize", "timing")
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
SCHEMA_REF = "#/components/schemas/"
USER_SOURCE = "user"
OVERRIDDEN = "x-runbase-overridden"


# --- merging ------------------------------------------------------------------------------


def merge_models(document: Mapping[str, Any], data: Any, source: str) -> JSON:
    """``document`` with the file's models added or changed; ``document`` itself is untouched.

    ``source`` (the file's name) starts every error message.
    """
    entries = models_of(data, source)
    merged: JSON = copy.deepcopy(dict(document))
    schemas: JSON = merged["components"]["schemas"]
    existing = branch_names(merged)
    for model_id, entry in entries.items():
        where = f"{source}: models.{model_id}"
        if model_id in existing:
            override(schemas, existing[model_id], entry, where)
        else:
            add(merged, model_id, entry, where)
    return merged


def models_of(data: Any, source: str) -> dict[str, Mapping[str, Any]]:
    """The file's entries, by model id, once the keys are known ones."""
    if data is None:
        raise ModelsFileError(f"{source}: the file is empty; it needs `models:` at the top")
    if not isinstance(data, Mapping):
        raise ModelsFileError(f"{source}: the top level must be a mapping with `models:`")
    for key in data:
        if key != "models":
            hint = did_you_mean(key, ["models"])
            raise ModelsFileError(
                f"{source}: unknown key {key!r} at the top{hint}; the file has one key, models"
            )
    models = data.get("models")
    if not isinstance(models, Mapping):
        raise ModelsFileError(f"{source}: models must map model ids (provider/name) to their data")
    entries: dict[str, Mapping[str, Any]] = {}
    for model_id, entry in models.items():
        if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
            raise ModelsFileError(
                f"{source}: models.{model_id}: a model id is provider/name (letters, digits, "
                ". _ -), e.g. acme/my-model"
            )
        where = f"{source}: models.{model_id}"
        if not isinstance(entry, Mapping) or not entry:
            raise ModelsFileError(f"{where}: must map keys ({', '.join(MODEL_KEYS)}) to values")
        for key in entry:
            if key not in MODEL_KEYS:
                raise ModelsFileError(
                    f"{where}: unknown key {key!r}{did_you_mean(key, MODEL_KEYS)}; "
                    f"a model takes {', '.join(MODEL_KEYS)}"
                )
        entries[model_id] = entry
    return entries


def did_you_mean(key: Any, choices: Iterable[str]) -> str:
    text = str(key)
    for choice in choices:
        if choice.lower() == text.lower():
            return f" (did you mean {choice!r}?)"
    close = difflib.get_close_matches(text, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def branch_names(document: Mapping[str, Any]) -> dict[str, str]:
    """Model id -> the name of its ``RunRequest`` schema, for every ``$ref`` branch."""
    names: dict[str, str] = {}
    schemas = document["components"]["schemas"]
    for branch in schemas["CreateRunRequest"]["oneOf"]:
        ref = branch.get("$ref", "") if isinstance(branch, Mapping) else ""
        if not ref.startswith(SCHEMA_REF):
            continue
        name = ref.removeprefix(SCHEMA_REF)
        model = schemas.get(name, {}).get("properties", {}).get("model", {})
        if isinstance(model, Mapping) and isinstance(model.get("const"), str):
            names[model["const"]] = name
    return names


def override(schemas: JSON, name: str, entry: Mapping[str, Any], where: str) -> None:
    request = schemas[name]
    extension = request.setdefault("x-runbase-model", {})
    kind = entry.get("kind", extension.get("kind"))
    if kind != extension.get("kind"):
        raise ModelsFileError(
            f"{where}.kind: a model of openapi.yaml keeps its kind ({extension.get('kind')})"
        )
    for key in FACT_KEYS:
        if key in entry:
            extension[key] = fact(key, entry[key], where)
    if "input" in entry:
        patch = input_schema(entry["input"], where)
        holder = request["properties"]
        ref = holder["input"].get("$ref", "")
        if not ref.startswith(SCHEMA_REF):
            holder["input"] = deep_merge(holder["input"], patch)
        elif shared(schemas, name, ref):  # another model uses it: change a copy of our own
            copied = fresh_name(schemas, name.removesuffix("RunRequest"), "Input")
            schemas[copied] = deep_merge(schemas[ref.removeprefix(SCHEMA_REF)], patch)
            holder["input"] = {"$ref": SCHEMA_REF + copied}
        else:
            target = ref.removeprefix(SCHEMA_REF)
            schemas[target] = deep_merge(schemas[target], patch)
    request[OVERRIDDEN] = sorted(entry)


def add(document: JSON, model_id: str, entry: Mapping[str, Any], where: str) -> None:
    needed = [*NEW_MODEL_NEEDS, *(["video"] if entry.get("kind") == "video" else [])]
    missing = [key for key in needed if key not in entry]
    if missing:
        raise ModelsFileError(
            f"{where}: a new model (no model of openapi.yaml has this id) needs "
            f"{', '.join(missing)}"
        )
    schemas: JSON = document["components"]["schemas"]
    base = camel_case(model_id)
    input_name = fresh_name(schemas, base, "Input")
    request_name = fresh_name(schemas, base, "RunRequest")
    schemas[input_name] = {
        "x-runbase-source": USER_SOURCE,
        **input_schema(entry["input"], where),
    }
    schemas[request_name] = {
        "x-runbase-source": USER_SOURCE,
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"const": model_id},
            "input": {"$ref": SCHEMA_REF + input_name},
        },
        "x-runbase-model": {k: fact(k, entry[k], where) for k in FACT_KEYS if k in entry},
    }
    schemas["CreateRunRequest"]["oneOf"].append({"$ref": SCHEMA_REF + request_name})


def input_schema(value: Any, where: str) -> JSON:
    if not isinstance(value, Mapping):
        raise ModelsFileError(f"{where}.input: must be a JSON Schema (a mapping)")
    return copy.deepcopy(dict(value))


def fact(key: str, value: Any, where: str) -> Any:
    """A copy of one ``x-runbase-model`` value, the keys of its tables as strings (the catalog
    looks a value up by the input's value as a string; YAML reads ``5:`` as a number)."""
    if key == "name" and (not isinstance(value, str) or not value.strip()):
        raise ModelsFileError(f"{where}.name: must be a non-empty string")
    return string_table_keys(copy.deepcopy(value))


def string_table_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: all_keys_strings(v) if k == "values" else string_table_keys(v)
            for k, v in node.items()
        }
    return node


def all_keys_strings(node: Any) -> Any:
    if isinstance(node, dict):
        return {table_key(k): all_keys_strings(v) for k, v in node.items()}
    return node


def table_key(key: Any) -> str:
    """``str`` as the catalog applies it to an input's value (JSON ``true`` is ``"True"``)."""
    return str(key)


def deep_merge(base: Any, patch: Any) -> Any:
    """``patch`` over ``base``: mappings key by key, recursively; any other value replaces."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def shared(schemas: Mapping[str, Any], name: str, ref: str) -> bool:
    """Whether a schema other than ``name`` refers to ``ref``'s input."""
    return any(
        isinstance(schema, Mapping)
        and other != name
        and schema.get("properties", {}).get("input", {}).get("$ref") == ref
        for other, schema in schemas.items()
    )


def camel_case(model_id: str) -> str:
    """``acme/new-image`` -> ``AcmeNewImage``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", model_id))


def fresh_name(schemas: Mapping[str, Any], base: str, suffix: str) -> str:
    """``<base><suffix>``, or with ``User``, ``User2``, ... before the suffix if taken."""
    for tag in ("", "User", *(f"User{n}" for n in range(2, 1000))):
        if f"{base}{tag}{suffix}" not in schemas:
            return f"{base}{tag}{suffix}"
    raise ModelsFileError(f"no free schema name for {base}{suffix}")


# --- checking -----------------------------------------------------------------------------


def check_user_models(
    document: Mapping[str, Any], model_ids: Iterable[str], source: str, compile: Compile
) -> None:
    """Each model the file names: its input schema compiles and the catalog can serve it."""
    names = branch_names(document)
    for model_id in model_ids:
        where = f"{source}: models.{model_id}"
        branch = {"$ref": SCHEMA_REF + names[model_id]}
        try:
            model = model_from_branch(document, branch)
        except CatalogError as error:
            raise ModelsFileError(catalog_problem(error, source)) from None
        try:
            validator = compile(dict(document), model.input_schema)
        except (ValueError, TypeError) as error:
            raise ModelsFileError(f"{where}.input: {schema_problem(error)}") from None
        check_defaults(document, model.input_schema, where, compile)
        try:
            check_model(model, validator.is_valid)
        except CatalogError as error:
            raise ModelsFileError(catalog_problem(error, source)) from None


def check_defaults(
    document: Mapping[str, Any], schema: Mapping[str, Any], where: str, compile: Compile
) -> None:
    """Each field's default is a value the field accepts: JSON Schema never checks a
    ``default``, and a run of the defaults would find no price for one outside the enum."""
    for name, prop in schema.get("properties", {}).items():
        if isinstance(prop, Mapping) and "default" in prop:
            field = compile(dict(document), {"properties": {name: dict(prop)}})
            if not field.is_valid({name: prop["default"]}):
                raise ModelsFileError(
                    f"{where}.input.properties.{name}.default: {prop['default']!r} is not a "
                    "value the field accepts"
                )


def catalog_problem(error: CatalogError, source: str) -> str:
    """``acme/x: x-runbase-model.timing ...`` -> ``FILE: models.acme/x: timing ...``: the
    catalog's message, in the file's own terms."""
    return f"{source}: models.{str(error).replace('x-runbase-model.', '')}"


def schema_problem(error: Exception) -> str:
    message = str(getattr(error, "message", error)).replace("\n", " ")
    path = ".".join(str(part) for part in getattr(error, "instance_path", []) or [])
    return f"not a valid JSON Schema{f' at {path}' if path else ''}: {message}"


def apply_models_file(document: Mapping[str, Any], path: Path, compile: Compile) -> JSON:
    """Read, merge and check a ``--models`` file: the document the catalog is built from."""
    data = read_models_file(path)
    source = str(path)
    merged = merge_models(document, data, source)
    check_user_models(merged, models_of(data, source), source, compile)
    return merged
