"""Load ``openapi.yaml`` once and compile the validators the mock checks requests with.

The document ships inside the wheel (``mock_runbase/openapi.yaml``); in a source checkout
it is the top-level ``openapi.yaml``. ``load_spec(path)`` takes another file instead, and
``load_spec(models=FILE)`` merges a user's models into it (``user_catalog``) before the catalog
is built; ``Spec.text``, the document served, stays the file as it is.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import jsonschema_rs
import yaml

from mock_runbase.catalog import Catalog, check_model
from mock_runbase.user_catalog import apply_models_file

# libyaml's parser and emitter, which PyYAML's wheels carry: ten times the pure-Python speed
# on documents of this size (start-up reads two)
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

__all__ = [
    "YAML_DUMPER",
    "YAML_LOADER",
    "Spec",
    "compile_pointer",
    "compile_schema",
    "default_spec_path",
    "load_spec",
    "packaged_file",
]

log = logging.getLogger("mock_runbase.spec")

SPEC_FILE = "openapi.yaml"
ENVELOPE_POINTER = "#/components/schemas/RunEnvelope"


def default_spec_path() -> Path:
    return packaged_file(SPEC_FILE)


def packaged_file(name: str) -> Path:
    """A document shipped inside the wheel (``mock_runbase/<name>``), else, in a source
    checkout, the one at the top of the repository."""
    packaged = resources.files("mock_runbase").joinpath(name)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / name


def data_uri_size(uri: str) -> int | None:
    """Decoded byte size of a ``data:`` URI, or None for any other URI."""
    if not uri.startswith("data:"):
        return None
    meta, _, payload = uri[5:].partition(",")
    if meta.endswith(";base64"):
        stripped = "".join(payload.split())
        try:
            return len(base64.b64decode(stripped, validate=True))
        except (binascii.Error, ValueError):
            return -1
    return len(unquote_to_bytes(payload))


class MaxDecodedBytes:
    """``x-runbase-max-bytes``: the decoded size limit of a ``data:`` URI.

    Sizes of ``http(s)`` URLs are not checked: the mock never fetches them.
    """

    def __init__(self, parent_schema: Any, value: int, schema_path: Any) -> None:
        self.limit = value

    def validate(self, instance: Any) -> None:
        if not isinstance(instance, str):
            return
        size = data_uri_size(instance)
        if size is None:
            return
        if size < 0:
            raise ValueError("is a data: URI whose base64 payload does not decode")
        if size > self.limit:
            raise ValueError(f"decodes to {size} bytes, more than the {self.limit} allowed")


CUSTOM_KEYWORDS: dict[str, Any] = {"x-runbase-max-bytes": MaxDecodedBytes}


@dataclass(frozen=True)
class Spec:
    """The parsed document, its model catalog and the validators compiled from it."""

    path: Path
    text: bytes
    document: dict[str, Any]
    catalog: Catalog
    envelope: Any
    input_validators: dict[str, Any] = field(repr=False)
    # model id -> the envelope and that model's input in one validator: a valid create is
    # checked with one call (its body converted once), the separate ones name the errors
    request_validators: dict[str, Any] = field(repr=False)

    def compile(self, pointer: str) -> Any:
        """A jsonschema-rs validator for the schema at ``pointer`` (``#/components/...``)."""
        return compile_pointer(self.document, pointer)

    def compile_schema(self, schema: dict[str, Any]) -> Any:
        """A validator for a schema whose ``$ref``s point into this document's components."""
        return compile_schema(self.document, schema)


def compile_schema(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator for a schema whose ``$ref``s point into ``document``'s components."""
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.validator_for(root, validate_formats=True, keywords=CUSTOM_KEYWORDS)


def compile_pointer(document: dict[str, Any], pointer: str) -> Any:
    root = {"$ref": pointer, "components": document["components"]}
    return jsonschema_rs.validator_for(root, validate_formats=True, keywords=CUSTOM_KEYWORDS)


def compile_request(document: dict[str, Any], input_pointer: str) -> Any:
    """A validator of a whole create body: the envelope, with ``input_pointer``'s input."""
    both = [{"$ref": ENVELOPE_POINTER}, {"properties": {"input": {"$ref": input_pointer}}}]
    return compile_schema(document, {"allOf": both})


def load_spec(path: str | Path | None = None, *, models: str | Path | None = None) -> Spec:
    """Read and compile a spec; the default one is cached, since it never changes.

    ``models``: a ``--models`` file of new and changed models (``user_catalog``), merged in
    before the catalog is built (``ModelsFileError`` if it cannot be used); the spec's
    ``text``, the document served, stays the file as it is.
    """
    if models is None:
        return _default_spec() if path is None else _load(Path(path))
    base = _default_spec() if path is None else _load(Path(path))
    document = apply_models_file(base.document, Path(models), compile_schema)
    return _build(base.path, base.text, document)


@lru_cache(maxsize=1)
def _default_spec() -> Spec:
    return _load(default_spec_path())


def _load(path: Path) -> Spec:
    text = path.read_bytes()
    return _build(path, text, yaml.load(text, Loader=YAML_LOADER))


def _build(path: Path, text: bytes, document: dict[str, Any]) -> Spec:
    catalog = Catalog.from_document(document)
    input_validators = {m.id: compile_pointer(document, m.input_pointer) for m in catalog}
    for model in catalog:
        check_model(model, input_validators[model.id].is_valid)
    spec = Spec(
        path=path,
        text=text,
        document=document,
        catalog=catalog,
        envelope=compile_pointer(document, ENVELOPE_POINTER),
        input_validators=input_validators,
        request_validators={m.id: compile_request(document, m.input_pointer) for m in catalog},
    )
    log.info(
        "spec %s: %d models, %d validators compiled",
        path,
        len(input_validators),
        1 + 2 * len(input_validators),
    )
    return spec
