"""Model facts (input schema, defaults, price, output size, video length, timing), from the spec.

Each model is one branch of ``CreateRunRequest.oneOf`` in ``openapi.yaml``: its ``model``
``const``, its ``input`` schema (defaults are JSON Schema ``default`` keywords) and its
``x-runbase-model`` extension. Adding a model is adding a branch there; nothing here names a
model, a ratio or a price. A fact is a *value node*, one of:

    1000                               a constant (also ``{value: 1000}``)
    {by: resolution, values: {...}}    a table keyed by one input field
    {by: [aspect_ratio, mode], ...}    nested tables keyed by several fields

``check_model`` refuses data the mock could not serve (a table that misses a value the
model's schema allows, a ``by`` field without a default, ...), naming the model and the field.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["Catalog", "CatalogError", "Model", "Timing", "check_model", "resolve_ref"]

JSON = dict[str, Any]
KINDS = {"image": "png", "video": "mp4"}
AUDIO_WORDS = ("always", "never")


class CatalogError(ValueError):
    """Model data the mock cannot serve; the message names the model and the field."""


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


def by_fields(node: Any) -> tuple[str, ...]:
    """The input fields a value node is keyed by (none for a constant)."""
    if not isinstance(node, Mapping) or "by" not in node:
        return ()
    by = node["by"]
    return (by,) if isinstance(by, str) else tuple(by)


def lookup(node: Any, full_input: Mapping[str, Any]) -> Any:
    """The value of a node for an input whose defaults are filled in."""
    if not isinstance(node, Mapping):
        return node
    if "value" in node:
        return node["value"]
    value = node["values"]
    for name in by_fields(node):
        value = value[str(full_input[name])]
    return value


def field_values(prop: Mapping[str, Any]) -> list[Any]:
    """The values worth trying of one input field: its enum, or a number's bounds and default."""
    if "enum" in prop:
        return list(prop["enum"])
    keys = ("minimum", "default", "maximum")
    return sorted({prop[k] for k in keys if k in prop}) if prop.get("type") == "number" else []


MAX_PRICED = 4096  # combinations remembered per model (a duration field has many values)


@dataclass(frozen=True)
class Timing:
    """How long a run of this model takes under ``--timing realistic``, before jitter."""

    pending_ms: int
    processing_ms: int


@dataclass(frozen=True)
class Model:
    """One model of the catalog; ``input`` arguments are validated inputs with defaults."""

    id: str
    name: str
    kind: str  # image | video
    input_pointer: str
    input_schema: JSON
    defaults: JSON
    cost: Any
    size: Any
    video: JSON | None
    timing: Timing
    extension: JSON = field(repr=False)

    @cached_property
    def input_fields(self) -> frozenset[str]:
        return frozenset(self.input_schema.get("properties", {}))

    @cached_property
    def priced_fields(self) -> tuple[str, ...]:
        """The input fields a run's price and size depend on."""
        keyed = {key for node in (self.cost, self.size) for key in by_fields(node)}
        if self.video is not None and "field" in self.video["durationSeconds"]:
            keyed.add(self.video["durationSeconds"]["field"])
        return tuple(sorted(keyed))

    @cached_property
    def _priced(self) -> dict[tuple[str, ...], tuple[int, int, int]]:
        return {}

    def price_and_size(self, full_input: Mapping[str, Any]) -> tuple[int, int, int]:
        """``cost_usd`` and ``output_size`` together, remembered for each combination of the
        fields they depend on (``priced_fields``, as text: the tables are keyed by it): a
        create looked them up in the catalog's tables each time, a tenth of its CPU."""
        key = tuple([str(full_input[name]) for name in self.priced_fields])
        found = self._priced.get(key)
        if found is not None:
            return found
        found = (self.cost_usd(full_input), *self.output_size(full_input))
        if len(self._priced) >= MAX_PRICED:
            self._priced.clear()
        self._priced[key] = found
        return found

    @property
    def file_extension(self) -> str:
        return KINDS[self.kind]

    def with_defaults(self, user_input: Mapping[str, Any]) -> JSON:
        """The declared fields of ``user_input`` over the defaults; unknown fields dropped."""
        known = self.input_fields
        if known.issuperset(user_input):  # nothing to drop (any valid input): one merge
            return {**self.defaults, **user_input}
        return {**self.defaults, **{k: v for k, v in user_input.items() if k in known}}

    def cost_usd(self, full_input: Mapping[str, Any]) -> int:
        """Price in micro-USD: a constant or a table, per second of video where so marked."""
        base = lookup(self.cost, full_input)
        if isinstance(self.cost, Mapping) and self.cost.get("perSecond"):
            per_second: float = base
            return round(per_second * self.duration_s(full_input))
        return int(base)

    def output_size(self, full_input: Mapping[str, Any]) -> tuple[int, int]:
        """Output (width, height) in pixels."""
        width, height = lookup(self.size, full_input)
        return int(width), int(height)

    def duration_s(self, full_input: Mapping[str, Any]) -> float:
        """A video's length in seconds (0 for an image)."""
        if self.video is None:
            return 0.0
        node = self.video["durationSeconds"]
        if "field" in node:
            return float(full_input[node["field"]])
        return float(node["value"])

    def fps(self, full_input: Mapping[str, Any]) -> int:
        return 0 if self.video is None else int(lookup(self.video["fps"], full_input))

    def has_audio(self, full_input: Mapping[str, Any]) -> bool:
        if self.video is None:
            return False
        audio = self.video["audio"]
        if isinstance(audio, Mapping):
            return bool(full_input[audio["field"]])
        return bool(audio == "always")

    def option_combinations(self) -> Iterator[JSON]:
        """Every combination of the fields the facts are keyed by, and of the duration field
        (a number field at its bounds and default), whether or not the schema accepts it."""
        keyed = {key for node in self.fact_nodes() for key in by_fields(node)}
        if self.video is not None and "field" in self.video["durationSeconds"]:
            keyed.add(self.video["durationSeconds"]["field"])
        properties = self.input_schema.get("properties", {})
        choices = {name: field_values(properties.get(name, {})) for name in sorted(keyed)}
        names = [name for name, values in choices.items() if values]
        for values in itertools.product(*(choices[n] for n in names)):
            yield self.with_defaults(dict(zip(names, values, strict=True)))

    def fact_nodes(self) -> list[Any]:
        nodes = [self.cost, self.size]
        if self.video is not None:
            nodes.append(self.video["fps"])
        return nodes

    def prices(self, accepts: Callable[[Any], bool] | None = None) -> list[int]:
        """Every price a run of this model can cost (of the combinations ``accepts`` takes)."""
        found = set()
        for combination in self.option_combinations():
            if accepts is not None and not accepts({"prompt": "x", **combination}):
                continue
            try:
                found.add(self.cost_usd(combination))
            except (KeyError, TypeError):
                continue
        return sorted(found)

    def size_combinations(self) -> Iterator[tuple[JSON, tuple[int, int]]]:
        """Every input-field combination the size table covers, with its size."""
        keys = by_fields(self.size)
        if not keys:
            yield {}, self.output_size({})
            return

        def walk(node: Any, depth: int, chosen: JSON) -> Iterator[tuple[JSON, tuple[int, int]]]:
            if depth == len(keys):
                yield chosen, (int(node[0]), int(node[1]))
                return
            for value, child in node.items():
                yield from walk(child, depth + 1, {**chosen, keys[depth]: value})

        yield from walk(self.size["values"], 0, {})


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, Model]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Catalog:
        """Every branch of ``CreateRunRequest`` (``check_model`` each once its input
        validator is compiled)."""
        branches = document["components"]["schemas"]["CreateRunRequest"]["oneOf"]
        models: dict[str, Model] = {}
        for branch in branches:
            model = model_from_branch(document, branch)
            if model.id in models:
                raise CatalogError(f"{model.id}: two branches of CreateRunRequest name it")
            models[model.id] = model
        return cls(models)

    def get(self, model_id: str) -> Model | None:
        return self.models.get(model_id)

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models.values())


def model_from_branch(document: Mapping[str, Any], branch: Mapping[str, Any]) -> Model:
    schema = resolve_ref(document, branch)
    where = branch.get("$ref", "a branch of CreateRunRequest")
    try:
        model_id = schema["properties"]["model"]["const"]
        input_ref = schema["properties"]["input"]
        extension = schema["x-runbase-model"]
    except (KeyError, TypeError):
        raise CatalogError(
            f"{where}: needs properties.model.const, properties.input and x-runbase-model"
        ) from None
    input_schema = resolve_ref(document, input_ref)

    def need(name: str) -> Any:
        if name not in extension:
            raise CatalogError(f"{model_id}: x-runbase-model.{name} is missing")
        return extension[name]

    kind = need("kind")
    if kind not in KINDS:
        raise CatalogError(f"{model_id}: x-runbase-model.kind must be one of {sorted(KINDS)}")
    timing = need("timing")
    try:
        pending, processing = int(timing["pendingMs"]), int(timing["processingMs"])
    except (KeyError, TypeError, ValueError):
        raise CatalogError(
            f"{model_id}: x-runbase-model.timing needs pendingMs and processingMs (integers)"
        ) from None
    if pending < 0 or processing < 0:
        raise CatalogError(f"{model_id}: x-runbase-model.timing must not be negative")
    video = extension.get("video")
    if (kind == "video") != (video is not None):
        raise CatalogError(f"{model_id}: x-runbase-model.video is for, and needed by, videos")
    return Model(
        id=model_id,
        name=str(need("name")),
        kind=kind,
        input_pointer=input_ref.get("$ref", ""),
        input_schema=input_schema,
        defaults={
            name: prop["default"]
            for name, prop in input_schema.get("properties", {}).items()
            if isinstance(prop, Mapping) and "default" in prop
        },
        cost=need("costUsd"),
        size=need("outputSize"),
        video=video,
        timing=Timing(pending, processing),
        extension=extension,
    )


def check_model(model: Model, accepts: Callable[[Any], bool]) -> None:
    """Every input the model's schema accepts must have a price, a size (and a length, a
    frame rate and an audio answer for a video): fail at start-up, not on a request."""
    facts: dict[str, Any] = {"costUsd": model.cost, "outputSize": model.size}
    if isinstance(model.cost, Mapping) and model.cost.get("perSecond") and model.kind != "video":
        raise CatalogError(f"{model.id}: x-runbase-model.costUsd.perSecond is for videos")
    if model.video is not None:
        facts["video.fps"] = model.video.get("fps")
        check_video(model)
    properties = model.input_schema.get("properties", {})
    keyed: set[str] = set()
    for name, node in facts.items():
        if node is None:
            raise CatalogError(f"{model.id}: x-runbase-model.{name} is missing")
        for key in by_fields(node):
            prop = properties.get(key)
            if not isinstance(prop, Mapping) or "enum" not in prop or "default" not in prop:
                raise CatalogError(
                    f"{model.id}: x-runbase-model.{name} is keyed by input.{key}, which "
                    "needs an enum and a default"
                )
            keyed.add(key)
        if not by_fields(node) and (not isinstance(node, Mapping) or "value" in node):
            continue
        if isinstance(node, Mapping) and "values" not in node:
            raise CatalogError(f"{model.id}: x-runbase-model.{name} needs value, or by and values")
    choices = [[(k, v) for v in properties[k]["enum"]] for k in sorted(keyed)]
    for combination in itertools.product(*choices):
        candidate = {**model.defaults, "prompt": "catalog check", **dict(combination)}
        if not accepts(candidate):
            continue
        full = model.with_defaults(candidate)
        for name, node in facts.items():
            try:
                value = lookup(node, full)
            except (KeyError, TypeError):
                given = ", ".join(f"{k}={v}" for k, v in combination)
                raise CatalogError(
                    f"{model.id}: x-runbase-model.{name} has no value for {given}"
                ) from None
            check_shape(model, name, value)


def check_shape(model: Model, name: str, value: Any) -> None:
    if name == "outputSize":
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and v > 0 for v in value)
            and (model.kind == "image" or all(v % 2 == 0 for v in value))
        )
        wanted = "[width, height], positive integers" + (", even" if model.kind == "video" else "")
    elif name == "costUsd":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        wanted = "a non-negative integer of micro-USD"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 120
        wanted = "frames per second, an integer from 1 to 120"
    if not ok:
        raise CatalogError(f"{model.id}: x-runbase-model.{name}: {value!r} is not {wanted}")


def check_video(model: Model) -> None:
    video = model.video or {}
    properties = model.input_schema.get("properties", {})
    duration = video.get("durationSeconds")
    if not isinstance(duration, Mapping) or not ({"field", "value"} & set(duration)):
        raise CatalogError(
            f"{model.id}: x-runbase-model.video.durationSeconds needs value or field"
        )
    if "field" in duration:
        prop = properties.get(duration["field"])
        if not isinstance(prop, Mapping) or "default" not in prop:
            raise CatalogError(
                f"{model.id}: x-runbase-model.video.durationSeconds names input."
                f"{duration['field']}, which needs a default"
            )
    elif not isinstance(duration["value"], int | float) or duration["value"] <= 0:
        raise CatalogError(f"{model.id}: x-runbase-model.video.durationSeconds must be positive")
    audio = video.get("audio")
    if isinstance(audio, Mapping):
        prop = properties.get(audio.get("field"))
        if not isinstance(prop, Mapping) or prop.get("type") != "boolean" or "default" not in prop:
            raise CatalogError(
                f"{model.id}: x-runbase-model.video.audio names input.{audio.get('field')}, "
                "which needs type boolean and a default"
            )
    elif audio not in AUDIO_WORDS:
        raise CatalogError(
            f"{model.id}: x-runbase-model.video.audio must be always, never or {{field: NAME}}"
        )
