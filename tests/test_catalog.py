"""The whole catalog against what Runbase documents, in tests generated from the data.

``DOCUMENTED`` is the oracle: the model pages' facts as ``../shared/runbase-api.md`` records
them (ids, every option exactly as listed, prices, reference-image limits). Every test below
walks it or the catalog; none is written for one model by hand. What the pages do not give
must be marked ``x-runbase-source: inferred`` in the spec.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from typing import Any

import av
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_runbase.catalog import MAX_PRICED, Model
from mock_runbase.errors import RunbaseError
from mock_runbase.spec import load_spec
from mock_runbase.validation import ValidatedRequest, parse_create_request
from tests.conftest import Mock, MockFactory

SPEC = load_spec()
MB = 1024 * 1024
IMAGE_DONE_S = 15
VIDEO_DONE_S = 30 * 60


@dataclass(frozen=True)
class Page:
    """One model page, as documented (``None``: the page does not say)."""

    kind: str
    options: dict[str, list[Any]]
    prices: dict[Any, int] | int | None = None  # keyed by the priced field's value
    priced_by: str | None = None
    images: tuple[int, int] | None = None  # (count, MB each)
    prompt_max: int | None = None
    extra_fields: tuple[str, ...] = field(default=())  # documented, with no option list


GPT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
SEEDREAM_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"]
SEEDANCE_RATIOS = ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"]
DOCUMENTED: dict[str, Page] = {
    "openai/gpt-image-2": Page(
        "image",
        {"aspect_ratio": GPT_RATIOS, "resolution": ["1K", "2K", "4K"]},
        {"1K": 50000, "2K": 70000, "4K": 120000},
        "resolution",
        (4, 4),
        4000,
    ),
    "openai/gpt-image-1.5": Page(
        "image",
        {"aspect_ratio": ["1:1", "3:2", "2:3"], "quality": ["medium", "high"]},
        {"medium": 30000, "high": 160000},
        "quality",
        (4, 4),
    ),
    "openai/gpt-image-1": Page(
        "image", {"aspect_ratio": ["1:1", "3:2", "2:3"]}, 50000, None, (5, 4), 4000
    ),
    "google/nano-banana-2": Page(
        "image",
        {
            "aspect_ratio": [
                *("1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1"),
                *("9:16", "16:9", "21:9", "auto"),
            ],
            "resolution": ["1K", "2K", "4K"],
        },
        {"1K": 60000, "2K": 90000, "4K": 130000},
        "resolution",
        (14, 30),
    ),
    "google/nano-banana": Page("image", {"aspect_ratio": [*GPT_RATIOS, "auto"]}),
    "google/nano-banana-pro": Page(
        "image", {"aspect_ratio": [*GPT_RATIOS, "auto"], "resolution": ["1K", "2K", "4K"]}
    ),
    "bytedance/seedream-4.5": Page(
        "image",
        {"aspect_ratio": SEEDREAM_RATIOS, "quality": ["basic", "high"]},
        {"basic": 50000, "high": 50000},
        "quality",
        (14, 10),
    ),
    "bytedance/seedream-5-lite": Page(
        "image",
        {"aspect_ratio": SEEDREAM_RATIOS, "quality": ["basic", "high"]},
        {"basic": 40000, "high": 40000},
        "quality",
        (14, 10),
    ),
    "google/veo-3": Page(
        "video",
        {"aspect_ratio": ["16:9", "9:16"], "resolution": ["720p", "1080p"]},
        images=(2, 10),
        prompt_max=5000,
    ),
    "kling/kling-3.0": Page(
        "video",
        {"aspect_ratio": ["16:9", "9:16", "1:1"], "mode": ["std", "pro", "4K"]},
        extra_fields=("duration",),
    ),
    "bytedance/seedance-1-pro": Page(
        "video",
        {
            "aspect_ratio": SEEDANCE_RATIOS,
            "resolution": ["720p", "1080p"],
            "duration": ["5", "10"],
        },
    ),
    "bytedance/seedance-1-lite": Page(
        "video",
        {
            "aspect_ratio": SEEDANCE_RATIOS,
            "resolution": ["480p", "720p", "1080p"],
            "duration": ["5", "10"],
        },
    ),
    "bytedance/seedance-1.5-pro": Page(
        "video",
        {
            "aspect_ratio": SEEDANCE_RATIOS,
            "resolution": ["480p", "720p", "1080p"],
            "duration": ["4", "8", "12"],
        },
        extra_fields=("generate_audio",),
    ),
    "hailuo/pro": Page("video", {}),
}
UNDOCUMENTED_MODELS = {"bytedance/seedance-2"}  # named in Core Concepts, no page


def model_of(model_id: str) -> Model:
    model = SPEC.catalog.get(model_id)
    assert model is not None, f"{model_id} is not in the catalog"
    return model


def accepted(model: Model, fields: dict[str, Any]) -> dict[str, Any] | None:
    """``fields`` (with a prompt), completed if need be with other option values so the
    model accepts them (GPT Image 2's 4K needs a wide ratio), else None."""
    validator = SPEC.input_validators[model.id]
    others = {
        name: prop["enum"]
        for name, prop in model.input_schema.get("properties", {}).items()
        if "enum" in prop and name not in fields
    }
    alone = {"prompt": "a catalog test", **fields}
    if validator.is_valid(alone):
        return alone
    for extra in itertools.product(*([(n, v) for v in vs] for n, vs in others.items())):
        candidate = {"prompt": "a catalog test", **dict(extra), **fields}
        if validator.is_valid(candidate):
            return candidate
    return None


def source_of(node: Any) -> str:
    return node.get("x-runbase-source", "documented") if isinstance(node, dict) else "documented"


# --- the models and their options ----------------------------------------------------------------


def test_the_catalog_is_every_documented_model_and_the_named_one() -> None:
    assert set(SPEC.catalog.models) == set(DOCUMENTED) | UNDOCUMENTED_MODELS
    kinds = [m.kind for m in SPEC.catalog if m.id in DOCUMENTED]
    assert (kinds.count("image"), kinds.count("video")) == (8, 6)
    for model_id, page in DOCUMENTED.items():
        assert model_of(model_id).kind == page.kind, model_id


def test_a_model_no_page_documents_is_marked_inferred_throughout() -> None:
    for model_id in UNDOCUMENTED_MODELS:
        request = SPEC.document["components"]["schemas"]
        [branch] = [
            name
            for name, schema in request.items()
            if schema.get("properties", {}).get("model", {}).get("const") == model_id
        ]
        assert request[branch]["x-runbase-source"] == "inferred"
        assert "no page" in request[branch]["description"].lower()
        assert source_of(model_of(model_id).input_schema) == "inferred"


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_prompt_alone_is_valid_for_every_model(model_id: str) -> None:
    request = parse({"model": model_id, "input": {"prompt": "a lighthouse at dawn"}})
    assert request.model.id == model_id


@pytest.mark.parametrize("model_id", sorted(DOCUMENTED))
def test_options_are_exactly_the_documented_ones(model_id: str) -> None:
    properties = model_of(model_id).input_schema["properties"]
    page = DOCUMENTED[model_id]
    documented_fields = {"prompt", "image_urls", *page.options, *page.extra_fields}
    assert set(properties) == documented_fields
    for name, options in page.options.items():
        assert properties[name]["enum"] == options, (model_id, name)
        kinds = {type(o) for o in options}
        assert kinds == {str}, (model_id, name)  # Seedance's durations are strings, as listed


OPTION_CASES = [
    (model_id, name, value)
    for model_id, page in DOCUMENTED.items()
    for name, options in page.options.items()
    for value in options
]


@pytest.mark.parametrize(("model_id", "name", "value"), OPTION_CASES)
def test_every_documented_option_value_is_accepted(model_id: str, name: str, value: Any) -> None:
    model = model_of(model_id)
    fields = accepted(model, {name: value})
    assert fields is not None, f"{model_id}: no accepted input has {name}={value}"
    request = parse({"model": model_id, "input": fields})
    assert request.input[name] == value


def field_cases() -> list[tuple[str, str]]:
    return [
        (model.id, name)
        for model in SPEC.catalog
        for name, prop in model.input_schema.get("properties", {}).items()
        if "enum" in prop or prop.get("type") in ("number", "boolean")
    ]


def invalid_value(prop: dict[str, Any]) -> Any:
    if "enum" in prop:
        return "not-an-option" if "not-an-option" not in prop["enum"] else "also-not"
    if prop.get("type") == "number":
        return prop.get("maximum", 10**6) + 1
    return "yes"  # a string where a boolean belongs


@pytest.mark.parametrize(("model_id", "name"), field_cases())
def test_one_invalid_value_per_field_is_invalid_input_naming_it(model_id: str, name: str) -> None:
    model = model_of(model_id)
    bad = invalid_value(model.input_schema["properties"][name])
    with pytest.raises(RunbaseError) as caught:
        parse({"model": model_id, "input": {"prompt": "x", name: bad}})
    assert (caught.value.status, caught.value.code) == (400, "invalid_input")
    assert f"input.{name}" in caught.value.message


def test_kling_duration_is_a_number_and_seedance_durations_are_strings() -> None:
    kling = model_of("kling/kling-3.0").input_schema["properties"]["duration"]
    assert kling["type"] == "number"
    assert parse({"model": "kling/kling-3.0", "input": {"prompt": "x", "duration": 7.5}})
    with pytest.raises(RunbaseError):
        parse({"model": "bytedance/seedance-1-pro", "input": {"prompt": "x", "duration": 5}})


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_an_undocumented_field_is_ignored(model_id: str) -> None:
    # The model pages' own cURL sample sends resolution to models that have none.
    body = {"prompt": "x", "unheard_of": 1, "resolution": "1K"}
    model = model_of(model_id)
    if "resolution" in model.input_fields:
        del body["resolution"]
    request = parse({"model": model_id, "input": body})
    assert "unheard_of" not in request.input


# --- prices, limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_prices_are_the_documented_ones_or_marked_inferred(model_id: str) -> None:
    model = model_of(model_id)
    page = DOCUMENTED.get(model_id)
    if page is None or page.prices is None:
        assert source_of(model.cost) == "inferred", f"{model_id}: its price must be marked"
        assert model.cost.get("x-runbase-reason"), model_id
        return
    assert source_of(model.cost) == "documented"
    if isinstance(page.prices, int):
        assert model.cost_usd(model.with_defaults({"prompt": "x"})) == page.prices
        return
    for value, price in page.prices.items():
        fields = accepted(model, {page.priced_by: value})
        assert fields is not None
        assert parse_price(model_id, fields) == price, (model_id, value)


def parse_price(model_id: str, fields: dict[str, Any]) -> int:
    request = parse({"model": model_id, "input": fields})
    return request.model.cost_usd(request.input)


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_reference_image_limits(model_id: str) -> None:
    images = model_of(model_id).input_schema["properties"]["image_urls"]
    page = DOCUMENTED.get(model_id)
    if page is None or page.images is None:
        assert source_of(images) == "inferred", model_id
        return
    count, megabytes = page.images
    assert images["maxItems"] == count
    assert images["items"]["x-runbase-max-bytes"] == megabytes * MB
    too_many = ["https://example.invalid/a.png"] * (count + 1)
    with pytest.raises(RunbaseError) as caught:
        parse({"model": model_id, "input": {"prompt": "x", "image_urls": too_many}})
    assert "input.image_urls" in caught.value.message


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_prompt_limits_are_documented_or_marked(model_id: str) -> None:
    prompt = model_of(model_id).input_schema["properties"]["prompt"]
    page = DOCUMENTED.get(model_id)
    if page is not None and page.prompt_max is not None:
        assert prompt["maxLength"] == page.prompt_max
    else:
        assert source_of(prompt) == "inferred", model_id
    too_long = "x" * (prompt["maxLength"] + 1)
    with pytest.raises(RunbaseError):
        parse({"model": model_id, "input": {"prompt": too_long}})


# --- sizes, lengths, timing ----------------------------------------------------------------------


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_every_accepted_combination_has_a_size_matching_its_ratio(model_id: str) -> None:
    model = model_of(model_id)
    for combo, (width, height) in model.size_combinations():
        assert width > 0 and height > 0
        if model.kind == "video":
            assert width % 2 == 0 and height % 2 == 0, (model_id, combo)
        ratio = combo.get("aspect_ratio")
        if ratio and ratio != "auto":
            w, h = map(int, ratio.split(":"))
            assert abs(width / height - w / h) / (w / h) < 0.04, (model_id, combo)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_valid_input_of_any_model_has_a_price_a_size_and_a_length(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(list(SPEC.catalog)))
    properties = model.input_schema["properties"]
    fields: dict[str, Any] = {"prompt": "x"}
    for name, prop in properties.items():
        if "enum" in prop and data.draw(st.booleans()):
            fields[name] = data.draw(st.sampled_from(prop["enum"]))
        elif prop.get("type") == "number" and data.draw(st.booleans()):
            fields[name] = data.draw(
                st.floats(prop["minimum"], prop["maximum"], allow_nan=False).map(
                    lambda f: round(f, 1)
                )
            )
        elif prop.get("type") == "boolean":
            fields[name] = data.draw(st.booleans())
    if not SPEC.input_validators[model.id].is_valid(fields):
        return  # a combination the model refuses (GPT Image 2's 4K at 1:1)
    request = parse({"model": model.id, "input": fields})
    full = request.input
    assert model.cost_usd(full) >= 0
    width, height = model.output_size(full)
    assert width > 0 and height > 0
    for _ in range(2):  # computed, then remembered: the same either way
        assert model.price_and_size(full) == (model.cost_usd(full), width, height)
    if model.kind == "video":
        assert model.duration_s(full) > 0 and model.fps(full) > 0
        if "duration" in fields:
            assert model.duration_s(full) == float(fields["duration"])


def test_remembered_prices_are_bounded_and_keyed_by_what_prices_them() -> None:
    """A number field (a Kling duration) has more values than are remembered."""
    model, field_name = next(
        (m, name)
        for m in SPEC.catalog
        for name in m.priced_fields
        if m.input_schema["properties"][name].get("type") == "number"
    )
    prop = model.input_schema["properties"][field_name]
    base = parse({"model": model.id, "input": {"prompt": "x"}}).input
    assert model.price_and_size({**base, "prompt": "another"}) == model.price_and_size(base)
    step = (prop["maximum"] - prop["minimum"]) / (MAX_PRICED * 2)
    for n in range(MAX_PRICED + 10):
        full = {**base, field_name: prop["minimum"] + n * step}
        assert model.price_and_size(full) == (model.cost_usd(full), *model.output_size(full))
        assert len(model._priced) <= MAX_PRICED


@pytest.mark.parametrize("model_id", sorted(SPEC.catalog.models))
def test_realistic_timing_images_in_seconds_videos_in_minutes(
    model_id: str, make_mock: MockFactory
) -> None:
    mock = make_mock(timing="realistic")
    run = mock.create_run(model_id, {"prompt": "timing"}).json()
    mock.clock.advance(IMAGE_DONE_S)
    status = mock.get(run["id"]).json()["status"]
    if model_of(model_id).kind == "image":
        assert status == "succeeded"
        return
    assert status in ("pending", "processing")
    mock.clock.advance(VIDEO_DONE_S - IMAGE_DONE_S)
    assert mock.get(run["id"]).json()["status"] == "succeeded"


# --- real video files ----------------------------------------------------------------------------

VIDEO_MODELS = sorted(m.id for m in SPEC.catalog if m.kind == "video")


def video_of(mock: Mock, model_id: str, fields: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    created = mock.create_run(model_id, {"prompt": "a video test", **fields})
    assert created.status_code == 200, created.text
    run = created.json()
    done = mock.get(run["id"]).json()
    assert done["status"] == "succeeded", done
    [url] = done["output"]["urls"]
    assert url.endswith(".mp4")
    return done, mock.client.get(url)


def smallest(model: Model) -> dict[str, Any]:
    """The cheapest input to render: the smallest frame, the shortest clip."""
    best: tuple[float, dict[str, Any]] | None = None
    for combo, (width, height) in model.size_combinations():
        fields = dict(combo)
        duration = model.input_schema["properties"].get("duration", {})
        if "enum" in duration:
            fields["duration"] = min(duration["enum"], key=float)
        elif duration.get("type") == "number":
            fields["duration"] = duration["minimum"]
        cost = width * height * model.duration_s(model.with_defaults(fields))
        if best is None or cost < best[0]:
            best = (cost, fields)
    assert best is not None
    return best[1]


@pytest.mark.parametrize("model_id", VIDEO_MODELS)
def test_a_video_run_links_to_a_real_mp4(model_id: str, make_mock: MockFactory) -> None:
    model = model_of(model_id)
    fields = smallest(model)
    mock = make_mock(timing="instant")
    _, response = video_of(mock, model_id, fields)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    full = model.with_defaults(fields)
    with av.open(io.BytesIO(response.content)) as container:
        [video] = container.streams.video
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == model.output_size(full)
        frames = sum(1 for _ in container.decode(video=0))
        assert frames > 1
        assert frames == round(model.duration_s(full) * model.fps(full))
        length = float(container.duration or 0) / av.time_base
        assert abs(length - model.duration_s(full)) <= 0.1
        audio = list(container.streams.audio)
        assert bool(audio) is model.has_audio(full), model_id
        if audio:
            assert audio[0].codec_context.name == "aac"


def test_seedance_15_pro_has_audio_only_when_asked(make_mock: MockFactory) -> None:
    mock = make_mock(timing="instant")
    base = {"resolution": "480p", "duration": "4", "aspect_ratio": "1:1"}
    for wanted in (True, False):
        _, response = video_of(
            mock, "bytedance/seedance-1.5-pro", {**base, "generate_audio": wanted}
        )
        with av.open(io.BytesIO(response.content)) as container:
            assert bool(list(container.streams.audio)) is wanted


def test_the_same_input_and_seed_give_the_same_video_bytes(make_mock: MockFactory) -> None:
    fields = {"resolution": "480p", "duration": "5", "aspect_ratio": "16:9"}
    first = video_of(make_mock(timing="instant"), "bytedance/seedance-1-lite", fields)[1]
    second = video_of(make_mock(timing="instant"), "bytedance/seedance-1-lite", fields)[1]
    assert first.content == second.content


def test_video_files_answer_head_and_range_requests(make_mock: MockFactory) -> None:
    mock = make_mock(timing="instant")
    fields = {"resolution": "480p", "duration": "5", "aspect_ratio": "1:1"}
    done, whole = video_of(mock, "bytedance/seedance-1-lite", fields)
    url = done["output"]["urls"][0]
    size = len(whole.content)
    assert whole.headers["accept-ranges"] == "bytes"
    head = mock.client.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(size)
    assert head.headers["content-type"] == "video/mp4"
    part = mock.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == whole.content[100:200]
    tail = mock.client.get(url, headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, whole.content[-10:])
    beyond = mock.client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"


def parse(body: dict[str, Any]) -> ValidatedRequest:
    return parse_create_request(SPEC, orjson.dumps(body))
