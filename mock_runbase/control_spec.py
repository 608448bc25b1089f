"""Load the mock's own API description, ``mock-openapi.yaml``, bundled with Runbase's.

The file refers to shared parts of ``openapi.yaml`` (the error body, the run) by relative
``$ref`` (``openapi.yaml#/components/...``) instead of copying them. ``bundle`` resolves those
references into the document's own ``components``, so the copy the mock compiles and serves
stands alone. Both files ship side by side inside the wheel (``mock_runbase/``); in a source
checkout they sit side by side at the top of the repository.
"""

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import orjson
import yaml

from mock_runbase.catalog import resolve_ref
from mock_runbase.errors import RunbaseError
from mock_runbase.rule_checks import with_match_branches, with_media_names
from mock_runbase.spec import (
    YAML_DUMPER,
    YAML_LOADER,
    Spec,
    compile_pointer,
    compile_schema,
    load_spec,
    packaged_file,
)

__all__ = ["ControlSpec", "QueryCheck", "bundle", "load_control_spec"]

log = logging.getLogger("mock_runbase.control_spec")

CONTROL_FILE = "mock-openapi.yaml"
EXTERNAL_PREFIX = "openapi.yaml#/components/"
INTEGER_TYPES = ("integer",)
DATE_TIME = "date-time"


class BundleError(ValueError):
    """A reference into ``openapi.yaml`` that the Runbase document does not resolve."""


def bundle(document: dict[str, Any], runbase: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every ``openapi.yaml#/components/<kind>/<name>`` reference copied
    into its own ``components`` (with whatever that part refers to in turn) and rewritten as
    a local ``#/components/<kind>/<name>``. A name already used locally for something else
    is an error, never a silent overwrite."""
    bundled = copy.deepcopy(document)
    components: dict[str, dict[str, Any]] = bundled.setdefault("components", {})
    pending = list(_external_refs(bundled))
    imported: set[tuple[str, str]] = set()
    while pending:
        kind, name = pending.pop()
        if (kind, name) in imported:
            continue
        imported.add((kind, name))
        part = runbase.get("components", {}).get(kind, {}).get(name)
        if part is None:
            raise BundleError(f"openapi.yaml has no components/{kind}/{name}")
        local = components.setdefault(kind, {})
        alias = {"$ref": f"{EXTERNAL_PREFIX}{kind}/{name}"}
        if name in local and local[name] not in (part, alias):
            raise BundleError(f"components/{kind}/{name} is defined in both documents")
        local[name] = copy.deepcopy(part)
        # Its own references point into openapi.yaml, where it came from.
        pending += _local_refs(local[name])
    _rewrite_external(bundled)
    return bundled


def _walk_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node
        for value in node.values():
            yield from _walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_refs(value)


def _split(ref: str, prefix: str) -> tuple[str, str] | None:
    if not ref.startswith(prefix):
        return None
    kind, _, name = ref.removeprefix(prefix).partition("/")
    return (kind, name) if kind and name and "/" not in name else None


def _external_refs(node: Any) -> Iterable[tuple[str, str]]:
    for holder in _walk_refs(node):
        found = _split(holder["$ref"], EXTERNAL_PREFIX)
        if found is None and holder["$ref"].startswith("openapi.yaml"):
            raise BundleError(f"{holder['$ref']}: only components of openapi.yaml can be shared")
        if found is not None:
            yield found


def _local_refs(node: Any) -> Iterable[tuple[str, str]]:
    for holder in _walk_refs(node):
        found = _split(holder["$ref"], "#/components/")
        if found is not None:
            yield found


def _rewrite_external(node: Any) -> None:
    for holder in _walk_refs(node):
        if holder["$ref"].startswith(EXTERNAL_PREFIX):
            holder["$ref"] = "#" + holder["$ref"].removeprefix("openapi.yaml#")


@dataclass(frozen=True)
class QueryCheck:
    """An operation's query parameters: their schemas, and a validator of the query object.

    Only declared parameters are taken: a misspelt filter that was ignored would answer as if
    it had matched. A schema's ``description``, where it has one, says what it accepts, and
    a value it refuses is answered with it (a pattern means little to a reader)."""

    declared: dict[str, Any]
    validator: Any = field(repr=False)

    def parse(self, items: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """The query, typed (integers where declared, ``date-time`` strings as aware
        datetimes) and validated, else 400 naming the parameter and what it accepts."""
        values: dict[str, Any] = {}
        for name, value in items:
            if name not in self.declared:
                raise RunbaseError(400, "invalid_request", self.unknown(name))
            if name in values:
                raise RunbaseError(400, "invalid_request", f"{name}: given more than once")
            integer = self.declared[name].get("type") in INTEGER_TYPES
            values[name] = as_integer(value) if integer else value
        problem = next(iter(self.validator.iter_errors(values)), None)
        if problem is None:
            return {name: self.typed(name, value) for name, value in values.items()}
        if not problem.instance_path:
            raise RunbaseError(400, "invalid_request", f"query: {problem.message}")
        name = str(problem.instance_path[0])
        raise RunbaseError(
            400, "invalid_request", self.refused(name, values[name], problem.message)
        )

    def typed(self, name: str, value: Any) -> Any:
        if self.declared[name].get("format") != DATE_TIME:
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:  # RFC 3339 that Python's datetime cannot hold: year 0, second 60
            message = f"{value!r} is a date and time out of the mock's range"
            raise RunbaseError(400, "invalid_request", self.refused(name, value, message)) from None

    def unknown(self, name: str) -> str:
        known = sorted(self.declared)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(known) if known else "none (this call takes no query parameter)"
        return f"unknown query parameter {name!r}{hint}; known: {listed}"

    def refused(self, name: str, value: Any, message: str) -> str:
        accepts = self.declared[name].get("description")
        if accepts is None:
            return f"{name}: {message}"
        return f"{name}: {value!r} is not accepted; expected {accepts}"


def as_integer(text: str) -> int | str:
    """The integer a query value spells, else the text itself (which then fails validation)."""
    digits = text[1:] if text.startswith("-") else text
    if not digits.isascii() or not digits.isdigit():
        return text
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return text


@dataclass(frozen=True)
class ControlSpec:
    """The bundled control document, as YAML and JSON, and what the mock checks with it."""

    path: Path
    document: dict[str, Any]
    json_bytes: bytes = field(repr=False)
    queries: dict[tuple[str, str], QueryCheck] = field(repr=False)

    @cached_property
    def yaml_text(self) -> bytes:
        """Written when first asked for: a tenth of a second, not at every start."""
        dumped: str = yaml.dump(
            self.document, Dumper=YAML_DUMPER, sort_keys=False, allow_unicode=True
        )
        return dumped.encode()

    def compile(self, pointer: str) -> Any:
        """A jsonschema-rs validator for the schema at ``pointer`` (``#/components/...``)."""
        return compile_pointer(self.document, pointer)

    def query(self, path: str, method: str) -> QueryCheck:
        return self.queries[(path, method.lower())]


def default_control_path() -> Path:
    return packaged_file(CONTROL_FILE)


def load_control_spec(
    runbase: Spec | None = None,
    path: str | Path | None = None,
    media_names: Sequence[str] = (),
) -> ControlSpec:
    """The control document bundled with ``runbase`` (default: the packaged Runbase spec),
    what a rule may match taken from its catalog, the files a rule may serve from
    ``media_names`` (``--media-dir``'s); the default document is read once per process."""
    if path is None and not media_names and (runbase is None or runbase is load_spec()):
        return _default_control_spec()
    return _load(Path(path or default_control_path()), runbase or load_spec(), media_names)


@lru_cache(maxsize=1)
def _default_control_spec() -> ControlSpec:
    return _load(default_control_path(), load_spec())


def _load(path: Path, runbase: Spec, media_names: Sequence[str] = ()) -> ControlSpec:
    document = bundle(yaml.load(path.read_bytes(), Loader=YAML_LOADER), runbase.document)
    with_match_branches(document, runbase.catalog)
    with_media_names(document, runbase.catalog, list(media_names))
    spec = ControlSpec(
        path=path,
        document=document,
        json_bytes=orjson.dumps(document),
        queries=query_checks(document),
    )
    log.info("control spec %s: %d query checks compiled", path, len(spec.queries))
    return spec


def query_checks(document: dict[str, Any]) -> dict[tuple[str, str], QueryCheck]:
    """(path, method) -> the query check of every operation of the document."""
    checks = {}
    for path, item in document["paths"].items():
        shared = [resolve_ref(document, p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            params = shared + [resolve_ref(document, p) for p in operation.get("parameters", [])]
            declared = {
                p["name"]: resolve_ref(document, p["schema"]) for p in params if p["in"] == "query"
            }
            validator = compile_schema(document, {"type": "object", "properties": declared})
            checks[(path, method)] = QueryCheck(declared, validator)
    return checks
