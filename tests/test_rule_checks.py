"""Rules that could never match, or that name a setting they would ignore, are refused.

Through the control API (400 ``invalid_request`` naming the field, the value and what is
allowed, nothing added), the config file (``ConfigError`` with the entry's place) and the
parser itself, against the catalog the mock serves; and the control document says the same
as the parser (a body its ``MockRuleInput`` accepts is a rule the mock accepts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.control_spec import default_control_path, load_control_spec
from mock_runbase.rule_checks import RuleError, check_meaning, checked_rule, match_branches
from mock_runbase.scenarios import MAX_LATENCY_MS, MAX_POLLS, PARAMS, POLL_PARAMS, SCENARIOS
from mock_runbase.spec import load_spec
from tests.conftest import GPT, Mock, MockFactory
from tests.test_app import error_of

CATALOG = load_spec().catalog
CONTROL = load_control_spec()
RULE_SCHEMA = CONTROL.compile("#/components/schemas/MockRuleInput")
FAIL = {"scenario": "fail"}

REFUSED = [  # (body, field, words the message must hold)
    ({"match": {"resolution": "8K"}}, "match.resolution", ["'8K'", "1K, 2K, 4K, 720p"]),
    ({"match": {"aspect_ratio": "7:5"}}, "match.aspect_ratio", ["'7:5'", "16:9"]),
    ({"match": {"model": "openai/gpt-image-3"}}, "match.model", ["'openai/gpt-image-2'?"]),
    (
        {"match": {"model": "hailuo/pro", "resolution": "720p"}},
        "match.resolution",
        ["hailuo/pro has no resolution input"],
    ),
    (
        {"match": {"model": "google/veo-3", "aspect_ratio": "1:1"}},
        "match.aspect_ratio",
        ["'1:1'", "google/veo-3: 16:9, 9:16"],
    ),
    (
        {"match": {"resolution": "480p", "aspect_ratio": "auto"}},
        "match.aspect_ratio",
        ["no model offers aspect_ratio 'auto' with resolution '480p'", "google/nano-banana"],
    ),
    (
        {"match": {"endpoint": "get", "model": GPT}, "effect": {"scenario": "error-500"}},
        "match.model",
        ["a poll has no model", "endpoint create or any"],
    ),
    (
        {"match": {"endpoint": "get", "prompt_regex": "^a"}, "effect": {"scenario": "drop"}},
        "match.prompt_regex",
        ["a poll has no model"],
    ),
    ({"match": {"endpoint": "get"}}, "match.endpoint", ["fail applies to creates only"]),
    (
        {"match": {"endpoint": "file"}},
        "match.endpoint",
        ["fail applies to creates only, never to a file: use endpoint create or any"],
    ),
    (
        {"match": {"endpoint": "file"}, "effect": {"scenario": "rate-limit"}},
        "match.endpoint",
        ["rate-limit applies to creates and polls, never to a file", "create or get or any"],
    ),
    (
        {"effect": {"scenario": "cdn-lag"}},
        "match.endpoint",
        ["cdn-lag applies to files only", "(endpoint any, the default)", "use endpoint file"],
    ),
    (
        {"match": {"endpoint": "get"}, "effect": {"scenario": "cdn-lag", "ms": 10}},
        "match.endpoint",
        ["cdn-lag applies to files only, never to a poll"],
    ),
    (
        {"match": {"endpoint": "file"}, "effect": {"scenario": "truncated", "ms": 10}},
        "effect.ms",
        ["truncated takes no parameters, not ms"],
    ),
    ({"match": {"key": "pk-live-1"}}, "match.key", ["'pk-live-1'", "'sk-'"]),
    ({"match": {"prompt_regex": "("}}, "match.prompt_regex", ["'('", "not a regex"]),
    ({"seed": 3}, "seed", ["add probability"]),
    ({"probability": 0}, "probability", ["0 never fires"]),
    ({"probability": 0.0, "seed": 1}, "probability", ["0 never fires"]),
    ({"effect": {"scenario": "stuck", "code": "x"}}, "effect.code", ["stuck takes pending_polls"]),
    ({"effect": {"scenario": "slow", "code": "x"}}, "effect.code", ["slow takes no parameters"]),
    (
        {"effect": {"scenario": "slow", "pending_polls": 2}},
        "effect.pending_polls",
        ["slow takes no parameters, not pending_polls"],
    ),
    (
        {"effect": {"scenario": "error-500", "pending_polls": 2}},
        "effect.pending_polls",
        ["error-500 takes message, not pending_polls"],
    ),
    (
        {"effect": {"scenario": "stuck", "processing_polls": 2}},
        "effect.processing_polls",
        ["stuck takes pending_polls, not processing_polls"],
    ),
    ({"effect": {"scenario": "fail", "pending_polls": -1}}, "effect.pending_polls", ["minimum"]),
    (
        {"effect": {"scenario": "succeed", "processing_polls": 1001}},
        "effect.processing_polls",
        ["maximum"],
    ),
    ({"effect": {"scenario": "stuck", "pending_polls": "2"}}, "effect.pending_polls", ["integer"]),
    ({"effect": {"scenario": "fail", "ms": 5}}, "effect.ms", ["fail takes code, message"]),
    ({"effect": {"scenario": "latency", "message": "m"}}, "effect.message", ["takes ms"]),
    ({"effect": {"scenario": "explode"}}, "effect.scenario", ["'explode'", "latency"]),
]


def rule(body: dict[str, Any]) -> dict[str, Any]:
    return {"effect": FAIL, **body}


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.mark.parametrize(("body", "field", "words"), REFUSED)
def test_a_rule_that_cannot_work_is_refused_naming_it_and_adds_nothing(
    mock: Mock, body: dict[str, Any], field: str, words: list[str]
) -> None:
    response = mock.client.post("/_mock/rules", json=rule(body))
    assert error_of(response) == (400, "invalid_request")
    message = response.json()["error"]["message"]
    assert message.startswith(f"{field}: "), message
    for word in words:
        assert word in message, message
    assert mock.client.get("/_mock/rules").json()["rules"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"match": {"model": GPT, "resolution": "4K", "aspect_ratio": "16:9"}},
        {"match": {"resolution": "720p", "aspect_ratio": "21:9"}},
        {"match": {"aspect_ratio": "auto"}},
        {"match": {"endpoint": "get", "key": "sk-a"}, "effect": {"scenario": "latency", "ms": 5}},
        {"every": 2, "probability": 0.5, "seed": 9},
        {"times": 1, "probability": 0.5},
        {"effect": {"scenario": "error-500", "message": "down"}},
        {
            "match": {"endpoint": "file", "model": GPT, "resolution": "4K", "prompt_regex": "^a"},
            "effect": {"scenario": "cdn-lag", "ms": 2000},
        },
        {"match": {"endpoint": "file", "key": "sk-a"}, "effect": {"scenario": "malformed-chunk"}},
        {"match": {"endpoint": "get"}, "effect": {"scenario": "reset"}, "times": 1},
        {"effect": {"scenario": "garbage"}, "probability": 0.5},
    ],
)
def test_a_rule_that_can_work_is_added(mock: Mock, body: dict[str, Any]) -> None:
    response = mock.client.post("/_mock/rules", json=rule(body))
    assert response.status_code == 201, response.text


def test_a_resolution_only_a_user_model_offers_is_a_rule_of_that_mock_only(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(
        """\
models:
  acme/huge:
    input:
      type: object
      required: [prompt]
      properties:
        prompt: {type: string}
        resolution: {enum: ['8K'], default: '8K'}
    name: Acme Huge
    kind: image
    costUsd: 10000
    outputSize: [512, 512]
    timing: {pendingMs: 100, processingMs: 100}
"""
    )
    body = rule({"match": {"resolution": "8K"}})
    assert make_mock().client.post("/_mock/rules", json=body).status_code == 400
    mine = make_mock(models=models)
    assert mine.client.post("/_mock/rules", json=body).status_code == 201
    served = mine.client.get("/_mock/openapi.json").json()
    branches = served["components"]["schemas"]["MockRuleInput"]["properties"]["match"]["anyOf"]
    huge = [b for b in branches if b["properties"]["model"] == {"const": "acme/huge"}]
    assert huge[0]["properties"]["resolution"] == {"enum": ["8K"]}
    wrong = rule({"match": {"model": "acme/huge", "resolution": "4K"}})
    message = mine.client.post("/_mock/rules", json=wrong).json()["error"]["message"]
    assert message.endswith("'4K' is not among the resolution values of acme/huge: 8K")


def test_a_config_rule_that_cannot_work_stops_start_up_naming_its_place(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    from mock_runbase.accounts import ConfigError

    config = tmp_path / "mock.yaml"
    config.write_text(
        "rules:\n  - {effect: {scenario: slow}}\n"
        "  - {match: {resolution: 8K}, effect: {scenario: slow}}\n"
    )
    with pytest.raises(
        ConfigError, match=r"mock\.yaml: rules\[1\]\.match\.resolution: '8K' is no model"
    ):
        make_mock(config=config)


# --- the parser, and the document that describes it -------------------------------------------


def test_the_parser_error_carries_the_field_for_a_config_loader() -> None:
    with pytest.raises(RuleError) as raised:
        checked_rule(rule({"match": {"resolution": "8K"}}), CATALOG, RULE_SCHEMA)
    assert raised.value.field == "match.resolution"
    assert raised.value.message.startswith("'8K' is no model's resolution")
    assert isinstance(raised.value, ValueError)
    with pytest.raises(RuleError) as shapeless:
        checked_rule({"effect": FAIL, "times": "two"}, CATALOG, RULE_SCHEMA)
    assert shapeless.value.field == "times"


def test_the_files_match_branches_are_the_packaged_catalogs() -> None:
    document = yaml.safe_load(default_control_path().read_text())
    match = document["components"]["schemas"]["MockRuleInput"]["properties"]["match"]
    expected = match_branches(CATALOG)
    assert match["anyOf"] == expected, (
        "mock-openapi.yaml's MockRuleInput.match.anyOf is stale:\n"
        + (yaml.safe_dump(expected, default_flow_style=None, sort_keys=False, width=200))
    )


def test_the_files_effect_parameters_are_the_registrys() -> None:
    document = yaml.safe_load(default_control_path().read_text())
    effect = document["components"]["schemas"]["MockRuleInput"]["properties"]["effect"]
    for param in PARAMS:
        allowed = effect["dependentSchemas"][param]["properties"]["scenario"]["enum"]
        assert set(allowed) == {n for n, s in SCENARIOS.items() if param in s.params}, param
    assert effect["properties"]["ms"]["maximum"] == MAX_LATENCY_MS
    for param in POLL_PARAMS:
        assert effect["properties"][param]["maximum"] == MAX_POLLS


FIELDS = {
    "endpoint": ["create", "get", "file", "any"],
    "model": [GPT, "hailuo/pro", "google/veo-3", "acme/none"],
    "resolution": ["1K", "4K", "720p", "480p", "8K"],
    "aspect_ratio": ["1:1", "16:9", "auto", "21:9", "7:5"],
    "prompt_regex": ["^a", "("],
    "key": ["sk-a", "pk-a"],
    "account": ["team"],
}
MATCHES = st.dictionaries(st.sampled_from(list(FIELDS)), st.just(None), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({name: st.sampled_from(FIELDS[name]) for name in chosen})
)
EFFECTS = st.sampled_from(list(SCENARIOS)).flatmap(
    lambda name: st.fixed_dictionaries(
        {"scenario": st.just(name)},
        optional={
            "code": st.just("c"),
            "message": st.just("m"),
            "ms": st.integers(0, 10),
            "pending_polls": st.integers(0, MAX_POLLS),
            "processing_polls": st.integers(0, MAX_POLLS),
        },
    )
)
BODIES = st.fixed_dictionaries(
    {"effect": EFFECTS},
    optional={
        "match": MATCHES,
        "times": st.integers(1, 3),
        "every": st.integers(1, 3),
        "probability": st.floats(0, 1),
        "seed": st.integers(0, 9),
    },
)


@given(BODIES)
def test_the_served_document_accepts_exactly_the_rules_the_mock_accepts(
    body: dict[str, Any],
) -> None:
    """Every problem of meaning is found by the parser's own checks, which name it plainly,
    and none that the document does not also state: schemathesis (and any client) can trust
    the document to say which rules the mock takes."""
    try:
        check_meaning(body, CATALOG)
    except RuleError:
        assert not RULE_SCHEMA.is_valid(body)
    else:
        assert RULE_SCHEMA.is_valid(body)
