"""Judge HTTP exchanges of the runs API against ``openapi.yaml``, in both directions.

    operations(spec)             the documented operations: path, statuses, error codes,
                                 response validators (compiled once)
    Judge(spec).request(...)     what a client sent that the spec does not allow
    Judge(spec).response(...)    what a server answered that the spec does not document
    Watch().observe(...)         rules across exchanges: runs never go back, clients back off

The validating proxy uses all three; the contract suite reads ``operations``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from mock_runbase.accounts import KEY_PREFIX
from mock_runbase.catalog import resolve_ref
from mock_runbase.errors import RunbaseError
from mock_runbase.spec import Spec
from mock_runbase.validation import parse_create_request

__all__ = ["Judge", "OperationSpec", "Violation", "Watch", "api_prefixes", "operations"]

JSON = dict[str, Any]
RUNS_TAG = "runs"
TERMINAL = ("succeeded", "failed")
RANK = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2}


@dataclass(frozen=True)
class Violation:
    direction: str  # request (the client's), response (the server's), client (its behaviour)
    rule: str  # a stable name: request-body, undocumented-status, client-ignored-429, ...
    message: str

    def view(self) -> JSON:
        return {"direction": self.direction, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class OperationSpec:
    id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    statuses: frozenset[int]
    codes: dict[str, int]  # error code -> the status the spec documents it under
    validators: dict[int, Any]  # status -> validator of the JSON body
    headers: dict[int, dict[str, Any]]  # status -> header name (lower case) -> validator
    parameters: dict[str, Any]  # path parameter -> validator
    body_media: frozenset[str]

    def success_statuses(self) -> frozenset[int]:
        return frozenset(s for s in self.statuses if 200 <= s < 300)


def api_prefixes(spec: Spec) -> tuple[str, ...]:
    """The path part of every server URL (``/v1``, ``/api/v1``), longest first."""
    paths = {urlsplit(s["url"]).path.rstrip("/") for s in spec.document["servers"]}
    return tuple(sorted((p for p in paths if p), key=len, reverse=True))


def operations(spec: Spec, tag: str = RUNS_TAG) -> list[OperationSpec]:
    found = []
    document = spec.document
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or tag not in operation.get("tags", []):
                continue
            codes: dict[str, int] = {}
            validators: dict[int, Any] = {}
            headers: dict[int, dict[str, Any]] = {}
            for status, raw in operation["responses"].items():
                response = resolve_ref(document, raw)
                headers[int(status)] = {
                    name.lower(): spec.compile_schema(resolve_ref(document, h)["schema"])
                    for name, h in response.get("headers", {}).items()
                }
                media = response.get("content", {}).get("application/json")
                if media is None:
                    continue
                validators[int(status)] = spec.compile_schema(media["schema"])
                for code in error_codes(document, media["schema"]):
                    codes.setdefault(code, int(status))
            parameters = {
                p["name"]: spec.compile_schema(p["schema"])
                for p in (resolve_ref(document, r) for r in operation.get("parameters", []))
                if p["in"] == "path"
            }
            body = resolve_ref(document, operation.get("requestBody", {}))
            found.append(
                OperationSpec(
                    id=operation["operationId"],
                    method=method.upper(),
                    path=path,
                    pattern=template_pattern(path),
                    statuses=frozenset(int(s) for s in operation["responses"]),
                    codes=codes,
                    validators=validators,
                    headers=headers,
                    parameters=parameters,
                    body_media=frozenset(body.get("content", {})),
                )
            )
    return found


def error_codes(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Iterator[str]:
    """Codes named by ``error.code``'s ``enum``/``const`` anywhere in an error schema (beside
    its ``$ref``, where a response narrows the shared error body, or in its ``allOf``)."""
    if "$ref" in schema:
        yield from error_codes(document, resolve_ref(document, {"$ref": schema["$ref"]}))
    for part in schema.get("allOf", []):
        yield from error_codes(document, part)
    code = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
    if "const" in code:
        yield code["const"]
    yield from code.get("enum", [])


def template_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", path)
    regex = "".join(
        f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def messages(validator: Any, instance: Any, limit: int = 3, root: str = "body") -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.instance_path) or root}: {e.message}"
        for e in list(validator.iter_errors(instance))[:limit]
    ]


class Judge:
    """The spec's rules for one exchange, compiled once."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.prefixes = api_prefixes(spec)
        self.operations = operations(spec)

    def match(self, method: str, path: str) -> tuple[OperationSpec | None, dict[str, str], bool]:
        """(operation, path parameters, whether the path is under a documented API prefix)."""
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix) :]
                for operation in self.operations:
                    found = operation.pattern.match(rest)
                    if found and operation.method == method.upper():
                        return (
                            operation,
                            {k: unquote(v) for k, v in found.groupdict().items()},
                            True,
                        )
                return None, {}, True
        return None, {}, False

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[OperationSpec | None, list[Violation]]:
        operation, params, api = self.match(method, path)
        if operation is None:
            if not api:
                return None, []  # the mock's own paths, files: outside the documented API
            return None, [
                Violation("request", "undocumented-operation", f"{method} {path} is not documented")
            ]
        found = [v for v in [auth_violation(headers.get("authorization"))] if v]
        for name, value in params.items():
            problems = (
                messages(operation.parameters[name], value) if name in operation.parameters else []
            )
            if problems:
                found.append(Violation("request", "request-parameter", problems[0]))
        if operation.body_media:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media not in operation.body_media:
                allowed = ", ".join(sorted(operation.body_media))
                found.append(
                    Violation(
                        "request",
                        "request-content-type",
                        f"Content-Type {media or '(none)'} is not {allowed}",
                    )
                )
            try:
                parse_create_request(self.spec, body)
            except RunbaseError as error:
                found.append(Violation("request", "request-body", f"{error.code}: {error.message}"))
        return operation, found

    def response(
        self, operation: OperationSpec, status: int, headers: Mapping[str, str], body: bytes
    ) -> list[Violation]:
        name = f"{operation.method} {operation.path}"
        if status not in operation.statuses:
            documented = ", ".join(map(str, sorted(operation.statuses)))
            return [
                Violation(
                    "response",
                    "undocumented-status",
                    f"{name} answered {status}; documented: {documented}",
                )
            ]
        found = []
        for header, validator in operation.headers.get(status, {}).items():
            value = headers.get(header)
            if value is not None:
                parsed: Any = int(value) if value.isdigit() else value
                for problem in messages(validator, parsed, 1, root=header):
                    found.append(Violation("response", "response-header", problem))
        validator = operation.validators.get(status)
        if validator is None:
            return found
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            found.append(Violation("response", "response-body", f"{status} body is not JSON"))
            return found
        if media != "application/json":
            found.append(Violation("response", "response-content-type", f"{media} for JSON"))
        for problem in messages(validator, data):
            found.append(Violation("response", "response-body", f"{status} {problem}"))
        return found


def auth_violation(header: str | None) -> Violation | None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() == "bearer" and token.startswith(KEY_PREFIX) and " " not in token.strip():
        return None
    shown = "missing" if header is None else f"{scheme!r} with a token not starting {KEY_PREFIX}"
    return Violation(
        "request", "request-auth", f"Authorization must be 'Bearer {KEY_PREFIX}...': {shown}"
    )


def key_id(header: str | None) -> str:
    """A stable, non-reversible name for the key in a header (never the key itself)."""
    return hashlib.sha256((header or "").encode()).hexdigest()[:12]


@dataclass
class Watch:
    """Rules across exchanges, on one clock: a run's status never goes back and a terminal run
    never changes; after a 429 a client waits before it asks again with the same key (the docs
    ask for exponential back-off; ``min_backoff`` is the least wait that counts as one)."""

    min_backoff: float = 0.5
    clock: Callable[[], float] = time.monotonic
    max_runs: int = 100_000  # runs remembered, the least recently seen forgotten first
    runs: dict[str, JSON] = field(default_factory=dict)
    limited: dict[str, float] = field(default_factory=dict)

    def before(self, authorization: str | None) -> list[Violation]:
        """Call when a request arrives, before it is forwarded."""
        key = key_id(authorization)
        since = self.limited.pop(key, None)
        if since is None:
            return []
        waited = self.clock() - since
        if waited >= self.min_backoff:
            return []
        return [
            Violation(
                "client",
                "client-ignored-429",
                f"asked again {waited:.3f} s after a 429 "
                f"with the same key (back off at least {self.min_backoff:g} s)",
            )
        ]

    def after(
        self, authorization: str | None, operation: OperationSpec | None, status: int, body: bytes
    ) -> list[Violation]:
        """Call with the answer."""
        if status == 429:
            self.limited[key_id(authorization)] = self.clock()
        if operation is None or status != 200 or operation.method != "GET":
            return []
        try:
            run = orjson.loads(body)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            return []
        before = self.runs.pop(run["id"], None)
        self.runs[run["id"]] = run  # most recently seen last
        if len(self.runs) > self.max_runs:
            del self.runs[next(iter(self.runs))]
        if before is None or run.get("status") not in RANK or before.get("status") not in RANK:
            return []
        old, new = before["status"], run["status"]
        if RANK[new] < RANK[old] or (old in TERMINAL and run != before):
            return [
                Violation(
                    "response",
                    "run-went-back",
                    f"run {run['id']} was {old}, now {new}"
                    + ("" if new != old else " with other fields"),
                )
            ]
        return []
