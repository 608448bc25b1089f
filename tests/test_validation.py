"""The mock's request validation agrees with the spec, and the catalog with the docs."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mock_runbase.catalog import resolve_ref
from mock_runbase.errors import RunbaseError
from mock_runbase.spec import load_spec
from mock_runbase.validation import ValidatedRequest, parse_create_request
from tests.test_spec import CREATE, GPT, RATIOS, RESOLUTIONS, ROOT, WIDE

SPEC = load_spec()
CREATE_OPERATION = schemathesis.openapi.from_path(ROOT / "openapi.yaml")["/runs"]["POST"]
SETTINGS = settings(suppress_health_check=list(HealthCheck), deadline=None)


def parse(body: Any) -> ValidatedRequest:
    return parse_create_request(SPEC, json.dumps(body).encode())


def error_code(body: Any) -> str:
    with pytest.raises(RunbaseError) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.message
    return caught.value.code


# --- the catalog, read from the spec, against the docs ------------------------------------


def test_gpt_image_2_prices_are_the_documented_ones() -> None:
    model = SPEC.catalog.get(GPT)
    assert model is not None
    prices = {r: model.cost_usd(model.with_defaults({"resolution": r})) for r in RESOLUTIONS}
    assert prices == {"1K": 50_000, "2K": 70_000, "4K": 120_000}


def test_size_table_covers_exactly_the_combinations_the_schema_accepts() -> None:
    model = SPEC.catalog.get(GPT)
    assert model is not None
    covered = {(c["aspect_ratio"], c["resolution"]) for c, _ in model.size_combinations()}
    accepted = {
        (ratio, res)
        for ratio in RATIOS
        for res in RESOLUTIONS
        if CREATE.is_valid(
            {"model": GPT, "input": {"prompt": "x", "aspect_ratio": ratio, "resolution": res}}
        )
    }
    assert covered == accepted
    assert len(covered) == 7 * 2 + 3 * 3


def test_every_model_has_a_size_for_every_accepted_input_combination() -> None:
    for model in SPEC.catalog:
        for combo, (width, height) in model.size_combinations():
            assert width > 0 and height > 0, (model.id, combo)


def test_gpt_image_2_sizes_respect_the_models_constraints() -> None:
    model = SPEC.catalog.get(GPT)
    assert model is not None
    for combo, (width, height) in model.size_combinations():
        assert width % 16 == 0 and height % 16 == 0, combo
        assert max(width, height) <= 3840, combo
        assert max(width, height) / min(width, height) <= 3, combo
        ratio_w, ratio_h = map(int, combo["aspect_ratio"].split(":"))
        assert abs(width / height - ratio_w / ratio_h) < 0.03, combo
    assert model.output_size({"aspect_ratio": "21:9", "resolution": "4K"}) == (3840, 1648)
    assert model.output_size({"aspect_ratio": "4:3", "resolution": "1K"}) == (1024, 768)


# --- parse_create_request: the codes and the defaults -----------------------------------


def test_defaults_are_applied() -> None:
    validated = parse({"model": GPT, "input": {"prompt": "a fox"}})
    assert validated.input == {"prompt": "a fox", "aspect_ratio": "1:1", "resolution": "1K"}
    assert validated.model.id == GPT


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1]", "invalid_json"),
        (b"null", "invalid_json"),
        (b'{"input": {"prompt": "x"}}', "missing_model"),
        (b'{"model": null, "input": {"prompt": "x"}}', "missing_model"),
        (b'{"model": ["x"], "input": {"prompt": "x"}}', "missing_model"),
        (b'{"model": "openai/gpt-image-2"}', "missing_input"),
        (b'{"model": 3}', "missing_model"),
        (b"{}", "missing_model"),
        (b'{"model": "openai/gpt-image-2", "input": []}', "missing_input"),
        (b'{"model": "openai/gpt-image-2", "input": "x"}', "missing_input"),
        (b'{"model": "openai/gpt-image-3", "input": {"prompt": "x"}}', "model_not_found"),
        (b'{"model": "", "input": {}}', "model_not_found"),
        (b'{"model": "openai/gpt-image-2", "input": {}}', "invalid_input"),
    ],
)
def test_envelope_errors(raw: bytes, code: str) -> None:
    with pytest.raises(RunbaseError) as caught:
        parse_create_request(SPEC, raw)
    assert (caught.value.status, caught.value.code) == (400, code)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prompt": ""}, "input.prompt"),
        ({"prompt": "x" * 4001}, "input.prompt"),
        ({"prompt": "x", "resolution": "4k"}, "input.resolution"),
        ({"prompt": "x", "resolution": "4K"}, "input.aspect_ratio"),
        ({"prompt": "x", "resolution": "4K", "aspect_ratio": "4:3"}, "input.aspect_ratio"),
        ({"prompt": "x", "image_urls": ["https://a/b.png"] * 5}, "input.image_urls"),
        ({"prompt": "x", "image_urls": [5]}, "input.image_urls.0"),
        ({"aspect_ratio": "1:1"}, "input.prompt"),
    ],
)
def test_invalid_input_message_names_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(RunbaseError) as caught:
        parse({"model": GPT, "input": fields})
    assert caught.value.code == "invalid_input"
    assert f"{named}:" in caught.value.message


def test_4k_message_explains_the_rule() -> None:
    with pytest.raises(RunbaseError) as caught:
        parse({"model": GPT, "input": {"prompt": "x", "resolution": "4K"}})
    assert "16:9" in caught.value.message or "wide" in caught.value.message


def invalid_input_message(model: str, fields: dict[str, Any]) -> str:
    with pytest.raises(RunbaseError) as caught:
        parse({"model": model, "input": fields})
    assert (caught.value.status, caught.value.code) == (400, "invalid_input")
    return caught.value.message


def test_a_long_value_is_shown_as_a_short_prefix_with_its_length() -> None:
    prompt = ("a lighthouse at dawn, " * 200)[:4001]
    message = invalid_input_message(GPT, {"prompt": prompt})
    assert message == (
        "Invalid input for openai/gpt-image-2: input.prompt: must be at most 4000 characters, "
        f'got "{prompt[:40]}…" (4001 characters)'
    )


@pytest.mark.parametrize(
    ("model", "fields", "says"),
    [
        (
            "google/nano-banana-2",
            {"prompt": "x", "aspect_ratio": "7:7"},
            'input.aspect_ratio: must be one of "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", '
            '"4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9", "auto", got "7:7"',
        ),
        (
            "bytedance/seedance-1-pro",
            {"prompt": "x", "duration": 5},
            'input.duration: must be one of "5", "10", got 5',  # a string, not a number
        ),
        (GPT, {"prompt": ""}, 'input.prompt: must be at least 1 character, got "" (0 characters)'),
        (GPT, {"prompt": 5}, "input.prompt: must be a string, got 5"),
        ("kling/kling-3.0", {"prompt": "x", "duration": -4}, "input.duration: must be at least 3"),
        (
            GPT,
            {"prompt": "x", "image_urls": ["https://e.com/a.png"] * 5},
            "input.image_urls: must have at most 4 items, got 5 items",
        ),
        (
            GPT,
            {"prompt": "x", "resolution": "4K", "aspect_ratio": "4:3"},
            'input.aspect_ratio: must be one of "16:9", "9:16", "21:9" when input.resolution is '
            '"4K", got "4:3" (4K only with the three wide ratios',
        ),
        (
            GPT,
            {"prompt": "x", "resolution": "4K"},
            'input.aspect_ratio: is required when input.resolution is "4K"',
        ),
    ],
)
def test_invalid_input_messages_say_what_is_allowed(
    model: str, fields: dict[str, Any], says: str
) -> None:
    assert says in invalid_input_message(model, fields)


def test_an_unknown_model_id_is_shown_as_a_short_prefix() -> None:
    with pytest.raises(RunbaseError) as caught:
        parse({"model": "m" * 5000, "input": {"prompt": "x"}})
    assert caught.value.code == "model_not_found"
    assert f'"{"m" * 40}…" (5000 characters)' in caught.value.message
    assert "m" * 41 not in caught.value.message


def data_uri(size: int) -> str:
    return "data:image/png;base64," + base64.b64encode(b"\0" * size).decode()


@pytest.mark.parametrize(
    ("size", "valid"), [(1, True), (4 * 1024 * 1024, True), (4 * 1024 * 1024 + 1, False)]
)
def test_data_uri_reference_images_are_capped_at_4_mb(size: int, valid: bool) -> None:
    body = {"model": GPT, "input": {"prompt": "x", "image_urls": [data_uri(size)]}}
    if valid:
        assert parse(body).input["image_urls"]
    else:
        assert error_code(body) == "invalid_input"


def test_undecodable_data_uri_is_invalid_input() -> None:
    body = {"model": GPT, "input": {"prompt": "x", "image_urls": ["data:image/png;base64,@@@"]}}
    assert error_code(body) == "invalid_input"


def test_http_reference_urls_are_not_fetched_or_sized() -> None:
    body = {"model": GPT, "input": {"prompt": "x", "image_urls": ["https://example.invalid/a.png"]}}
    assert parse(body).input["image_urls"] == ["https://example.invalid/a.png"]


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(case=CREATE_OPERATION.as_strategy())
def test_bodies_generated_from_the_spec_are_accepted_with_the_catalog_price(case: Any) -> None:
    body = case.body
    assert CREATE.is_valid(body)
    validated = parse(body)
    assert validated.model.id == body["model"]
    declared = validated.model.input_schema["properties"]
    sent = {k: v for k, v in body["input"].items() if k in declared}
    assert validated.input == {**validated.model.defaults, **sent}
    assert validated.model.cost_usd(validated.input) > 0
    width, height = validated.model.output_size(validated.input)
    assert width > 0 and height > 0


@st.composite
def valid_gpt_inputs(draw: st.DrawFn) -> dict[str, Any]:
    ratio = draw(st.sampled_from(RATIOS))
    resolutions = RESOLUTIONS if ratio in WIDE else RESOLUTIONS[:2]
    fields: dict[str, Any] = {
        "prompt": draw(st.text(min_size=1, max_size=4000)),
        "aspect_ratio": ratio,
        "resolution": draw(st.sampled_from(resolutions)),
    }
    keep = {"prompt"} | ({"aspect_ratio"} if fields["resolution"] == "4K" else set())
    return {k: v for k, v in fields.items() if k in keep or draw(st.booleans())}


MUTATIONS: dict[str, Any] = {
    "prompt wrong type": lambda i, d: {
        **i,
        "prompt": d(st.one_of(st.integers(), st.none(), st.lists(st.text()))),
    },
    "prompt too long": lambda i, d: {**i, "prompt": "p" * d(st.integers(4001, 6000))},
    "prompt empty": lambda i, d: {**i, "prompt": ""},
    "prompt missing": lambda i, d: {k: v for k, v in i.items() if k != "prompt"},
    "unknown ratio": lambda i, d: {
        **i,
        "aspect_ratio": d(st.text().filter(lambda s: s not in RATIOS)),
    },
    "unknown resolution": lambda i, d: {
        **i,
        "resolution": d(st.text().filter(lambda s: s not in RESOLUTIONS)),
    },
    "ratio wrong type": lambda i, d: {
        **i,
        "aspect_ratio": d(
            st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))
        ),
    },
    "4K with a narrow ratio": lambda i, d: {
        **i,
        "resolution": "4K",
        "aspect_ratio": d(st.sampled_from([r for r in RATIOS if r not in WIDE])),
    },
    "4K without a ratio": lambda i, d: {
        **{k: v for k, v in i.items() if k != "aspect_ratio"},
        "resolution": "4K",
    },
    "too many images": lambda i, d: {
        **i,
        "image_urls": [f"https://e.com/{n}.png" for n in range(d(st.integers(5, 9)))],
    },
    "image_urls not a list": lambda i, d: {**i, "image_urls": "https://e.com/a.png"},
}


@SETTINGS
@given(valid=valid_gpt_inputs(), mutation=st.sampled_from(sorted(MUTATIONS)), data=st.data())
def test_mutations_of_a_valid_input_are_rejected_as_invalid_input(
    valid: dict[str, Any], mutation: str, data: st.DataObject
) -> None:
    assert parse({"model": GPT, "input": valid})
    mutated = MUTATIONS[mutation](valid, data.draw)
    body = {"model": GPT, "input": mutated}
    assert not CREATE.is_valid(body), mutation
    assert error_code(body) == "invalid_input", mutation


@SETTINGS
@given(
    valid=valid_gpt_inputs(),
    model=st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.text()), st.just(...)),
)
def test_a_model_that_is_not_a_string_is_missing_model(valid: dict[str, Any], model: Any) -> None:
    body: dict[str, Any] = {"input": valid}
    if model is not ...:
        body["model"] = model
    assert not CREATE.is_valid(body)
    assert error_code(body) == "missing_model"


@SETTINGS
@given(model=st.text().filter(lambda m: SPEC.catalog.get(m) is None), valid=valid_gpt_inputs())
def test_an_unknown_model_is_model_not_found(model: str, valid: dict[str, Any]) -> None:
    body = {"model": model, "input": valid}
    assert not CREATE.is_valid(body)
    assert error_code(body) == "model_not_found"


@SETTINGS
@given(raw=st.binary())
def test_any_bytes_are_accepted_or_get_a_documented_400(raw: bytes) -> None:
    try:
        parse_create_request(SPEC, raw)
    except RunbaseError as error:
        assert error.status == 400
        assert error.code in {"invalid_json", "missing_model", "missing_input"} | {
            "model_not_found",
            "invalid_input",
        }


MESSAGE_BOUND = 700  # characters: 5 failing rules, each with its field, limits and a prefix
FIELDS = [
    (model, name)
    for model in SPEC.catalog
    for name in resolve_ref(SPEC.document, {"$ref": model.input_pointer})["properties"]
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
    | st.integers(41, 20_000).map(lambda n: "é" * n),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_an_invalid_field_gets_a_bounded_message_naming_it_and_what_it_allows(
    field: tuple[Any, str], value: Any
) -> None:
    model, name = field
    schema = resolve_ref(
        SPEC.document,
        resolve_ref(SPEC.document, {"$ref": model.input_pointer})["properties"][name],
    )
    assume(not SPEC.compile_schema(schema).is_valid(value))
    message = invalid_input_message(model.id, {"prompt": "x", name: value})
    assert f"input.{name}" in message
    for allowed in schema.get("enum", []):
        assert json.dumps(allowed) in message
    assert len(message) <= MESSAGE_BOUND
    assert "é" * 41 not in message  # a long string is never repeated beyond its prefix


def test_generic_validator_and_mock_agree_on_the_format_of_uris() -> None:
    for url in ["https://e.com/a.png", "data:image/png;base64,AAAA", "x y", "relative/path"]:
        body = {"model": GPT, "input": {"prompt": "x", "image_urls": [url]}}
        generic = jsonschema.Draft202012Validator(
            {
                "$ref": "#/components/schemas/CreateRunRequest",
                "components": SPEC.document["components"],
            },
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        ).is_valid(body)
        try:
            parse(body)
            mock = True
        except RunbaseError:
            mock = False
        assert generic == mock, url


def separately_valid(body: dict[str, Any], model_id: str) -> bool:
    """The envelope, then the model's input: the checks a create's errors come from."""
    return SPEC.envelope.is_valid(body) and SPEC.input_validators[model_id].is_valid(body["input"])


@SETTINGS
@given(case=CREATE_OPERATION.as_strategy(), other=st.sampled_from([m.id for m in SPEC.catalog]))
def test_the_one_call_check_of_a_create_agrees_with_the_separate_checks_on_valid_bodies(
    case: Any, other: str
) -> None:
    """A generated body is valid for its own model and, checked against another model's
    input, valid in one call exactly when it is valid in two."""
    body = case.body
    assert SPEC.request_validators[body["model"]].is_valid(body)
    assert SPEC.request_validators[other].is_valid(body) == separately_valid(body, other)


@SETTINGS
@given(
    field=st.sampled_from(FIELDS),
    value=JSON_VALUES,
    extra=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3),
)
def test_the_one_call_check_of_a_create_agrees_with_the_separate_checks_on_any_input(
    field: tuple[Any, str], value: Any, extra: dict[str, Any]
) -> None:
    model, name = field
    body: dict[str, Any] = {**extra, "model": model.id, "input": {"prompt": "x", name: value}}
    expected = separately_valid(body, model.id)
    assert SPEC.request_validators[model.id].is_valid(body) == expected
    if expected:
        assert parse(body).input == model.with_defaults(body["input"])
    else:
        assert error_code(body) in {"invalid_input", "missing_model", "missing_input"}
