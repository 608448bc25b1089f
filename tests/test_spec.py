"""The spec itself: valid OpenAPI 3.1, and every documented rule enforced by its schemas.

Bodies are judged by a generic JSON Schema validator (python-jsonschema), not project code,
so these tests hold the document to the docs; ``test_validation.py`` holds the mock's
validation to the document.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
GPT = "openai/gpt-image-2"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

# The facts of ../shared/runbase-api.md, restated as test data: the spec must agree.
RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
WIDE = {"16:9", "9:16", "21:9"}
RESOLUTIONS = ["1K", "2K", "4K"]
DOCUMENTED_ERRORS = {
    ("post", 400): {"invalid_json", "missing_model", "missing_input", "invalid_input"}
    | {"model_not_found"},
    ("post", 401): {"missing_api_key", "invalid_api_key"},
    ("post", 402): {"insufficient_balance"},
    ("post", 403): {"api_key_spend_limit_exceeded", "ip_not_allowed"},
    ("post", 429): {"RATE_LIMITED", "USAGE_EXCEEDED"},
    ("get", 401): {"missing_api_key", "invalid_api_key"},
    ("get", 404): {"run_not_found"},
    ("get", 429): {"RATE_LIMITED"},
}


def generic_validator(pointer: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": pointer, "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


CREATE = generic_validator("#/components/schemas/CreateRunRequest")
RUN = generic_validator("#/components/schemas/Run")


def gpt(**input_fields: Any) -> dict[str, Any]:
    return {"model": GPT, "input": {"prompt": "a red fox", **input_fields}}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def test_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate_openapi(DOCUMENT)


def test_servers_are_the_two_documented_bases_only() -> None:
    urls = [server["url"] for server in DOCUMENT["servers"]]
    assert urls == ["https://api.runbase.net/v1", "https://runbase.net/api/v1"]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        **DOCUMENT["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    assert set(DOCUMENT["paths"]["/runs"]) == {"post"}
    assert set(DOCUMENT["paths"]["/runs/{id}"]) == {"get"}


@pytest.mark.parametrize(
    ("ratio", "resolution"), list(itertools.product([None, *RATIOS], [None, *RESOLUTIONS]))
)
def test_every_ratio_and_resolution_combination(ratio: str | None, resolution: str | None) -> None:
    fields = {k: v for k, v in {"aspect_ratio": ratio, "resolution": resolution}.items() if v}
    effective_ratio = ratio or "1:1"  # documented defaults
    expected_valid = resolution != "4K" or effective_ratio in WIDE
    assert CREATE.is_valid(gpt(**fields)) is expected_valid


@pytest.mark.parametrize(
    ("prompt", "valid"),
    [
        ("", False),
        ("x", True),
        ("x" * 4000, True),
        ("x" * 4001, False),
        ("é" * 4000, True),
        (None, False),
        (42, False),
        (["x"], False),
        ({"text": "x"}, False),
        (True, False),
    ],
)
def test_prompt_rules(prompt: Any, valid: bool) -> None:
    assert CREATE.is_valid({"model": GPT, "input": {"prompt": prompt}}) is valid


def test_prompt_is_required() -> None:
    assert not CREATE.is_valid({"model": GPT, "input": {"aspect_ratio": "1:1"}})


@pytest.mark.parametrize(("count", "valid"), [(0, True), (1, True), (4, True), (5, False)])
def test_image_urls_count(count: int, valid: bool) -> None:
    urls = [f"https://example.com/ref-{i}.png" for i in range(count)]
    assert CREATE.is_valid(gpt(image_urls=urls)) is valid


@pytest.mark.parametrize("url", ["not a url", 7, None, ""])
def test_image_urls_items_are_uri_strings(url: Any) -> None:
    assert not CREATE.is_valid(gpt(image_urls=[url]))


def test_model_and_input_envelope() -> None:
    assert CREATE.is_valid({"model": "google/nano-banana-2", "input": {"prompt": "a cat"}})
    for body in [
        {"input": {"prompt": "x"}},
        {"model": 3, "input": {"prompt": "x"}},
        {"model": GPT},
        {"model": GPT, "input": "prompt"},
        {"model": "acme/unknown", "input": {"prompt": "x"}},
        [],
    ]:
        assert not CREATE.is_valid(body), body


def operation_errors() -> dict[tuple[str, int], set[str]]:
    """(method, status) -> codes the spec declares, read from the response schemas."""
    found: dict[tuple[str, int], set[str]] = {}
    for path in ("/runs", "/runs/{id}"):
        for method, operation in DOCUMENT["paths"][path].items():
            for status, response in operation["responses"].items():
                examples = resolve(response)["content"]["application/json"].get("examples", {})
                codes = {
                    ex["value"]["error"]["code"]
                    for ex in examples.values()
                    if "error" in ex["value"]
                }
                if codes:
                    found[(method, int(status))] = codes
    return found


def test_every_documented_error_code_is_declared_with_an_example() -> None:
    declared = operation_errors()
    for key, codes in DOCUMENTED_ERRORS.items():
        assert codes <= declared[key], key
    assert 500 in {status for (_, status) in declared}


@pytest.mark.parametrize(("key", "codes"), DOCUMENTED_ERRORS.items())
def test_error_schemas_accept_exactly_their_codes(key: tuple[str, int], codes: set[str]) -> None:
    method, status = key
    path = "/runs" if method == "post" else "/runs/{id}"
    response = resolve(DOCUMENT["paths"][path][method]["responses"][str(status)])
    schema = {
        **response["content"]["application/json"]["schema"],
        "components": DOCUMENT["components"],
    }
    validator = jsonschema.Draft202012Validator(schema)
    for code in codes:
        assert validator.is_valid({"error": {"message": "m", "code": code}})
    assert not validator.is_valid({"error": {"message": "m", "code": "rate_limited"}})
    assert not validator.is_valid({"error": {"code": next(iter(codes))}})
    examples = response["content"]["application/json"]["examples"].values()
    assert all(validator.is_valid(example["value"]) for example in examples)


def test_rate_limit_codes_are_upper_case_as_documented() -> None:
    codes = operation_errors()[("post", 429)]
    assert codes == {"RATE_LIMITED", "USAGE_EXCEEDED"}


def test_create_response_links_to_get_run() -> None:
    created = resolve(DOCUMENT["paths"]["/runs"]["post"]["responses"]["200"])
    link = created["links"]["GetRunById"]
    assert link["operationId"] == "getRun"
    assert link["parameters"] == {"id": "$response.body#/id"}


@pytest.mark.parametrize(
    "run",
    [
        {"id": "run_2abc", "model": GPT, "status": "pending", "costUsd": 50000},
        {
            "id": "run_2abc",
            "model": GPT,
            "status": "succeeded",
            "costUsd": 50000,
            "output": {"urls": ["https://runbase.net/files/generated/abc123.png"]},
            "createdAt": "2026-06-01T12:00:00.000Z",
            "completedAt": "2026-06-01T12:00:04.200Z",
        },
    ],
)
def test_run_schema_accepts_documented_shapes(run: dict[str, Any]) -> None:
    RUN.validate(run)


@pytest.mark.parametrize(
    "change",
    [
        {"id": "2abc"},
        {"status": "done"},
        {"costUsd": 0.05},
        {"createdAt": "2026-06-01T12:00:00Z"},
        {"createdAt": "2026-06-01 12:00:00.000Z"},
        {"status": "succeeded"},  # no output, no completedAt
        {"status": "failed", "completedAt": "2026-06-01T12:00:04.200Z"},  # no error
        {"output": {"urls": ["https://x/y.png"]}},  # output while pending
    ],
)
def test_run_schema_rejects_wrong_shapes(change: dict[str, Any]) -> None:
    run = {"id": "run_2abc", "model": GPT, "status": "pending", "costUsd": 50000, **change}
    assert not RUN.is_valid(run)


def test_every_example_in_the_document_validates() -> None:
    seen = 0
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            bodies = [operation.get("requestBody", {})]
            bodies += [resolve(r) for r in operation["responses"].values()]
            for holder in bodies:
                for media in holder.get("content", {}).values():
                    schema = {**media["schema"], "components": DOCUMENT["components"]}
                    validator = jsonschema.Draft202012Validator(schema)
                    for example in media.get("examples", {}).values():
                        seen += 1
                        assert validator.is_valid(example["value"]), (path, method, example)
    assert seen >= 20


def walk_nodes(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((where, node))
        for key, child in node.items():
            found += walk_nodes(child, f"{where}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += walk_nodes(child, f"{where}/{index}")
    return found


def test_every_operation_schema_and_response_says_where_it_comes_from() -> None:
    sources = {"documented", "inferred", "mock"}
    holders = list(DOCUMENT["components"]["schemas"].items())
    holders += list(DOCUMENT["components"]["responses"].items())
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            holders.append((f"{method} {path}", operation))
            holders += [
                (f"{method} {path} {status}", response)
                for status, response in operation["responses"].items()
                if "$ref" not in response
            ]
    for name, holder in holders:
        assert holder.get("x-runbase-source") in sources, name
    for where, node in walk_nodes(DOCUMENT):
        if node.get("x-runbase-source") == "inferred":
            assert node.get("x-runbase-reason") or "description" in node, where


def test_check_order_is_declared_inferred_and_covers_every_create_error() -> None:
    order = DOCUMENT["x-runbase-check-order"]
    assert order["x-runbase-source"] == "inferred"
    create_codes = set().union(*(c for (m, _), c in DOCUMENTED_ERRORS.items() if m == "post"))
    assert set(order["order"]) == create_codes


def test_mock_paths_are_tagged_apart_from_the_documented_api() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            documented = path in ("/runs", "/runs/{id}")
            assert (operation["tags"] == ["runs"]) is documented, (path, method)


def test_no_model_fact_is_written_in_python() -> None:
    """Prices, sizes, ratios and limits live in openapi.yaml only."""
    facts = [r"\b50000\b", r"\b120000\b", r"\b3840\b", r"\b1648\b", r"\b4000\b", r"\b4194304\b"]
    facts += [r"['\"]16:9['\"]", r"['\"]21:9['\"]", r"['\"]4K['\"]", r"['\"]1K['\"]"]
    for source in (ROOT / "mock_runbase").rglob("*.py"):
        text = source.read_text()
        for fact in facts:
            assert not re.search(fact, text), f"{source.name} hard-codes {fact}"
