"""Model facts (input schema, defaults, price, output pixel size), read from the spec.

Each model is one branch of ``CreateRunRequest.oneOf`` in ``openapi.yaml``: its ``model``
``const``, its ``input`` schema (defaults are JSON Schema ``default`` keywords) and its
``x-runbase-model`` extension (``costUsd`` and ``outputSize``). Adding a model is adding a
branch there; nothing here names a model, a ratio or a price.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["Catalog", "Model", "resolve_ref"]

JSON = dict[str, Any]


def resolve_ref(document: Mapping[str, Any], schema: Mapping[str, Any]) -> JSON:
    """Follow local ``$ref`` pointers (``#/a/b``) until a schema without one."""
    seen: set[str] = set()
    while "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            raise ValueError(f"unsupported or circular $ref: {ref!r}")
        seen.add(ref)
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return dict(schema)


@dataclass(frozen=True)
class Model:
    """One model of the catalog; ``input`` arguments are validated inputs with defaults."""

    id: str
    name: str
    input_pointer: str
    input_schema: JSON
    defaults: JSON
    cost: Any
    output_size_table: Any
    output_size_keys: tuple[str, ...]
    extension: JSON = field(repr=False)

    @cached_property
    def input_fields(self) -> frozenset[str]:
        return frozenset(self.input_schema.get("properties", {}))

    def with_defaults(self, user_input: Mapping[str, Any]) -> JSON:
        """The declared fields of ``user_input`` over the defaults; unknown fields dropped."""
        known = self.input_fields
        return {**self.defaults, **{k: v for k, v in user_input.items() if k in known}}

    def cost_usd(self, full_input: Mapping[str, Any]) -> int:
        """Price in micro-USD: a constant, or a table keyed by one input field."""
        if isinstance(self.cost, int):
            return self.cost
        return int(self.cost["values"][full_input[self.cost["by"]]])

    def output_size(self, full_input: Mapping[str, Any]) -> tuple[int, int]:
        """Output (width, height) in pixels, looked up by the input fields named in ``by``."""
        node = self.output_size_table
        for key in self.output_size_keys:
            node = node[full_input[key]]
        width, height = node
        return int(width), int(height)

    def size_combinations(self) -> Iterator[tuple[JSON, tuple[int, int]]]:
        """Every input-field combination the size table covers, with its size."""

        def walk(node: Any, depth: int, chosen: JSON) -> Iterator[tuple[JSON, tuple[int, int]]]:
            if depth == len(self.output_size_keys):
                yield chosen, (int(node[0]), int(node[1]))
                return
            for value, child in node.items():
                yield from walk(child, depth + 1, {**chosen, self.output_size_keys[depth]: value})

        yield from walk(self.output_size_table, 0, {})


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, Model]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Catalog:
        branches = document["components"]["schemas"]["CreateRunRequest"]["oneOf"]
        models: dict[str, Model] = {}
        for branch in branches:
            schema = resolve_ref(document, branch)
            model_id = schema["properties"]["model"]["const"]
            input_ref = schema["properties"]["input"]
            input_schema = resolve_ref(document, input_ref)
            extension = schema["x-runbase-model"]
            size = extension["outputSize"]
            by = size["by"]
            models[model_id] = Model(
                id=model_id,
                name=extension["name"],
                input_pointer=input_ref["$ref"],
                input_schema=input_schema,
                defaults={
                    name: prop["default"]
                    for name, prop in input_schema.get("properties", {}).items()
                    if "default" in prop
                },
                cost=extension["costUsd"],
                output_size_table=size["values"],
                output_size_keys=tuple([by] if isinstance(by, str) else by),
                extension=extension,
            )
        return cls(models)

    def get(self, model_id: str) -> Model | None:
        return self.models.get(model_id)

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models.values())
