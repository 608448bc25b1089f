"""``GET /_mock/models``: the catalog the mock serves (after ``--models``), one view per model.

A view shows what the mock does with a model: its input fields (type, enum, default, limits),
its price and size tables as the spec and the ``--models`` file write them, a video's length,
frame rate and audio, and the timing under ``--timing realistic``. ``source`` says where the
model comes from: ``documented`` or ``inferred`` (``openapi.yaml``), or ``user`` (added by
``--models``); ``overridden`` lists the keys the file changed on a model of ``openapi.yaml``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from mock_runbase.catalog import JSON, Catalog, Model, resolve_ref
from mock_runbase.user_catalog import OVERRIDDEN

__all__ = ["catalog_view", "model_view"]

FIELD_FACTS = (
    "type",
    "enum",
    "const",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "description",
)


def catalog_view(document: Mapping[str, Any], catalog: Catalog) -> list[JSON]:
    """Every model of ``catalog``, in the order of ``CreateRunRequest.oneOf``."""
    requests: dict[str, JSON] = {}
    for branch in document["components"]["schemas"]["CreateRunRequest"]["oneOf"]:
        schema = resolve_ref(document, branch)
        requests[schema["properties"]["model"]["const"]] = schema
    return [model_view(document, model, requests.get(model.id, {})) for model in catalog]


def model_view(document: Mapping[str, Any], model: Model, request: Mapping[str, Any]) -> JSON:
    return {
        "id": model.id,
        "name": model.name,
        "kind": model.kind,
        "source": request.get("x-runbase-source", "documented"),
        "overridden": list(request.get(OVERRIDDEN, [])),
        "fields": input_fields(document, model.input_schema),
        "costUsd": model.cost,
        "outputSize": model.size,
        "video": model.video,
        "timing": {
            "pendingMs": model.timing.pending_ms,
            "processingMs": model.timing.processing_ms,
        },
    }


def input_fields(document: Mapping[str, Any], schema: Mapping[str, Any]) -> list[JSON]:
    """The input's top-level properties with the facts a caller needs about each."""
    required = set(schema.get("required", []))
    fields: list[JSON] = []
    for name, prop in schema.get("properties", {}).items():
        if not isinstance(prop, Mapping):
            continue
        with contextlib.suppress(KeyError, TypeError, ValueError):  # shown as written
            prop = resolve_ref(document, prop)
        field: JSON = {"name": name, "required": name in required}
        field.update((key, prop[key]) for key in FIELD_FACTS if key in prop)
        fields.append(field)
    return fields
