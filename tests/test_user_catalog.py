"""``serve --models FILE``: a user's own models and overrides of the spec's, and
``GET /_mock/models``, the catalog the mock serves.

A good file changes what the API does (a new model runs at its declared price and size, an
override changes a price or a limit) while ``/openapi.yaml`` stays Runbase's document. A bad
file stops start-up with one line naming the file, the model and the field: from ``load_spec``
and ``create_app`` as a ``ModelsFileError``, from ``mock-runbase serve`` as exit status 2.
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from mock_runbase.app import create_app
from mock_runbase.settings import MockSettings
from mock_runbase.spec import default_spec_path, load_spec
from mock_runbase.user_catalog import MODEL_KEYS, ModelsFileError, merge_models
from tests.conftest import GPT, KEY, Mock, MockFactory
from tests.served import Server, serve_command
from tests.test_app import error_of

NEW = "acme/new-image"
GOOD = f"""\
models:
  {NEW}:                          # a new model
    input:
      type: object
      required: [prompt]
      properties:
        prompt: {{type: string, minLength: 1}}
        size: {{enum: [small, big], default: small}}
        aspect: {{enum: [1:1, 16:9], default: 1:1}}   # unquoted ratios stay strings
    name: Acme New Image
    kind: image
    costUsd: {{by: size, values: {{small: 10000, big: 20000}}}}
    outputSize:
      by: [size, aspect]
      values:
        small: {{1:1: [512, 512], 16:9: [640, 360]}}
        big: {{1:1: [1024, 1024], 16:9: [1280, 720]}}
    timing: {{pendingMs: 200, processingMs: 1000}}
  acme/clip:                      # a new video model
    input: {{type: object, required: [prompt], properties: {{prompt: {{type: string}}}}}}
    name: Acme Clip
    kind: video
    costUsd: 300000
    outputSize: [640, 360]
    video: {{durationSeconds: {{value: 2}}, fps: 12, audio: never}}
    timing: {{pendingMs: 1000, processingMs: 5000}}
  {GPT}:                          # overrides: only these keys change
    costUsd: {{by: resolution, values: {{1K: 40000, 2K: 60000, 4K: 100000}}}}
    input: {{properties: {{prompt: {{maxLength: 20}}, image_urls: {{maxItems: 2}}}}}}
"""
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def user_mock(make_mock: MockFactory, models_file: Path) -> Mock:
    return make_mock(models=models_file)


def create(mock: Mock, model: str, **fields: Any) -> httpx.Response:
    body = {"model": model, "input": {"prompt": "a lighthouse", **fields}}
    headers = {"Authorization": f"Bearer {KEY}"}
    response: httpx.Response = mock.client.post("/v1/runs", json=body, headers=headers)
    return response


def models_of(mock: Mock) -> dict[str, dict[str, Any]]:
    response = mock.client.get("/_mock/models")
    assert response.status_code == 200, response.text
    return {model["id"]: model for model in response.json()["models"]}


# --- a good file ------------------------------------------------------------------------------


def test_a_new_model_runs_at_its_declared_price_and_size(user_mock: Mock) -> None:
    before = user_mock.balance()
    created = create(user_mock, NEW, size="big", aspect="16:9")
    assert created.status_code == 200, created.text
    assert created.json()["costUsd"] == 20000
    assert user_mock.balance() == before - 20000
    user_mock.advance(0.1)
    assert user_mock.get(created.json()["id"]).json()["status"] == "pending"
    user_mock.advance(30)
    run = user_mock.get(created.json()["id"]).json()
    assert run["status"] == "succeeded", run
    assert user_mock.image(run["output"]["urls"][0]).size == (1280, 720)


def test_a_new_model_uses_its_defaults(user_mock: Mock) -> None:
    created = create(user_mock, NEW)
    assert created.json()["costUsd"] == 10000
    user_mock.advance(30)
    run = user_mock.get(created.json()["id"]).json()
    assert user_mock.image(run["output"]["urls"][0]).size == (512, 512)


def test_a_new_model_is_validated_by_its_own_schema(user_mock: Mock) -> None:
    refused = create(user_mock, NEW, size="huge")
    assert error_of(refused) == (400, "invalid_input")
    assert "input.size" in refused.json()["error"]["message"]
    assert '"small", "big"' in refused.json()["error"]["message"]


def test_an_override_changes_the_price(user_mock: Mock, mock: Mock) -> None:
    assert create(user_mock, GPT).json()["costUsd"] == 40000
    assert create(user_mock, GPT, resolution="2K").json()["costUsd"] == 60000
    assert create(mock, GPT).json()["costUsd"] == 50000  # a mock without the file: the spec's


def test_an_override_changes_input_limits_and_keeps_the_rest(user_mock: Mock) -> None:
    assert create(user_mock, GPT, image_urls=[PNG, PNG]).status_code == 200
    too_many = create(user_mock, GPT, image_urls=[PNG, PNG, PNG])
    assert error_of(too_many) == (400, "invalid_input")
    assert "input.image_urls" in too_many.json()["error"]["message"]
    body = {"model": GPT, "input": {"prompt": "x" * 21}}
    too_long = user_mock.client.post(
        "/v1/runs", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert error_of(too_long) == (400, "invalid_input")
    assert "input.prompt" in too_long.json()["error"]["message"]
    # what the file does not name stays: the aspect ratios, the 4K rule, the items' format
    assert error_of(create(user_mock, GPT, resolution="4K")) == (400, "invalid_input")
    assert create(user_mock, GPT, resolution="4K", aspect_ratio="16:9").status_code == 200
    assert error_of(create(user_mock, GPT, image_urls=["not a uri"])) == (400, "invalid_input")


def test_the_served_document_stays_runbases_own(user_mock: Mock) -> None:
    served = user_mock.client.get("/openapi.yaml")
    assert served.content == default_spec_path().read_bytes()
    assert NEW not in served.text


def test_merging_leaves_the_loaded_document_alone(models_file: Path) -> None:
    import yaml

    document = load_spec().document
    before = copy.deepcopy(document)
    merged = merge_models(document, yaml.safe_load(models_file.read_text()), "f.yaml")
    assert document == before
    schemas = merged["components"]["schemas"]
    assert {"$ref": "#/components/schemas/AcmeNewImageRunRequest"} in schemas["CreateRunRequest"][
        "oneOf"
    ]
    assert schemas["AcmeNewImageRunRequest"]["x-runbase-model"]["kind"] == "image"
    assert schemas["GptImage2Input"]["properties"]["image_urls"]["maxItems"] == 2


# --- GET /_mock/models ------------------------------------------------------------------------


def test_models_lists_every_model_of_the_catalog_with_its_kind(mock: Mock) -> None:
    catalog = load_spec().catalog
    listed = models_of(mock)
    assert list(listed) == [model.id for model in catalog]
    assert {id_: m["kind"] for id_, m in listed.items()} == {m.id: m.kind for m in catalog}
    assert {m["source"] for m in listed.values()} <= {"documented", "inferred"}
    gpt = listed[GPT]
    assert gpt["overridden"] == []
    assert gpt["costUsd"]["values"]["1K"] == 50000
    assert gpt["timing"] == {"pendingMs": 500, "processingMs": 3700}
    assert gpt["video"] is None
    fields = {f["name"]: f for f in gpt["fields"]}
    assert fields["prompt"]["required"] is True
    assert fields["resolution"] == {
        "name": "resolution",
        "required": False,
        "enum": ["1K", "2K", "4K"],
        "default": "1K",
    }
    videos = [m for m in listed.values() if m["kind"] == "video"]
    assert videos and all({"durationSeconds", "fps", "audio"} <= set(m["video"]) for m in videos)


def test_models_shows_the_files_models_and_overrides(user_mock: Mock) -> None:
    listed = models_of(user_mock)
    new = listed[NEW]
    assert (new["source"], new["name"], new["kind"]) == ("user", "Acme New Image", "image")
    assert new["costUsd"] == {"by": "size", "values": {"small": 10000, "big": 20000}}
    assert new["outputSize"]["values"]["big"]["16:9"] == [1280, 720]
    assert new["timing"] == {"pendingMs": 200, "processingMs": 1000}
    assert {f["name"]: f.get("default") for f in new["fields"]} == {
        "prompt": None,
        "size": "small",
        "aspect": "1:1",
    }
    clip = listed["acme/clip"]
    assert clip["video"] == {"durationSeconds": {"value": 2}, "fps": 12, "audio": "never"}
    gpt = listed[GPT]
    assert gpt["source"] == "documented"
    assert gpt["overridden"] == ["costUsd", "input"]
    assert gpt["costUsd"]["values"]["1K"] == 40000
    assert {f["name"]: f for f in gpt["fields"]}["image_urls"]["maxItems"] == 2
    assert list(listed)[-2:] == [NEW, "acme/clip"]


def test_models_needs_the_admin_token_when_one_is_set(make_mock: MockFactory) -> None:
    guarded = make_mock(admin_token="s3cret")
    assert error_of(guarded.client.get("/_mock/models")) == (401, "admin_token_required")
    answer = guarded.client.get("/_mock/models", headers={"X-Mock-Admin-Token": "s3cret"})
    assert answer.status_code == 200


# --- bad files --------------------------------------------------------------------------------

NEW_MODEL = """\
  acme/x:
    input: {type: object, properties: {prompt: {type: string}, size: {enum: [s, m], default: s}}}
    name: X
    kind: image
    costUsd: 1000
    outputSize: [64, 64]
    timing: {pendingMs: 0, processingMs: 0}
"""

NEW_VIDEO = NEW_MODEL.replace("kind: image", "kind: video")
NOPE = "$ref: '#/components/schemas/Nope'"
MORE_RESOLUTIONS = "{properties: {resolution: {enum: [1K, 2K, 4K, 8K]}}}"

BAD_FILES: dict[str, tuple[str | None, list[str]]] = {
    # name: (file text, or None for no file; what the one-line message must say, after FILE)
    "yaml syntax": ("models:\n  acme/x: {name: [unclosed\n", [":3: not valid YAML"]),
    "yaml duplicate": (
        f"models:\n{NEW_MODEL}{NEW_MODEL}",
        [":9: not valid YAML", "key 'acme/x' appears twice"],
    ),
    "empty file": ("", [": the file is empty"]),
    "top-level typo": (
        f"modles:\n{NEW_MODEL}",
        [": unknown key 'modles' at the top (did you mean 'models'?)"],
    ),
    "models not a mapping": ("models: [acme/x]\n", [": models must map model ids"]),
    "model id without provider": (
        "models:\n  new-image: {name: X}\n",
        [": models.new-image: a model id is provider/name"],
    ),
    "entry key typo": (
        f"models:\n  {GPT}:\n    costUSD: 1\n",
        [f": models.{GPT}: unknown key 'costUSD' (did you mean 'costUsd'?)"],
    ),
    "new model without timing": (
        "models:\n  acme/x: {input: {type: object}, name: X, kind: image, costUsd: 1,"
        " outputSize: [8, 8]}\n",
        [": models.acme/x: a new model", "needs timing"],
    ),
    "new video without video": (
        f"models:\n{NEW_VIDEO}",
        [": models.acme/x: a new model", "needs video"],
    ),
    "bad schema": (
        f"models:\n{NEW_MODEL.replace('type: string', 'type: strng')}",
        [": models.acme/x.input: not a valid JSON Schema at properties.prompt.type"],
    ),
    "dangling schema ref": (
        f"models:\n{NEW_MODEL.replace('type: string', NOPE)}",
        [": models.acme/x.input: not a valid JSON Schema", "Nope"],
    ),
    "bad kind": (
        f"models:\n{NEW_MODEL.replace('kind: image', 'kind: audio')}",
        [": models.acme/x: kind must be one of"],
    ),
    "price table misses a value": (
        f"models:\n{NEW_MODEL.replace('costUsd: 1000', 'costUsd: {by: size, values: {s: 1}}')}",
        [": models.acme/x: costUsd has no value for size=m"],
    ),
    "odd video size": (
        f"models:\n{NEW_VIDEO.replace('[64, 64]', '[63, 64]')}"
        "    video: {durationSeconds: {value: 2}, fps: 12, audio: never}\n",
        [": models.acme/x: outputSize: [63, 64] is not [width, height], positive integers, even"],
    ),
    "override changes the kind": (
        f"models:\n  {GPT}: {{kind: video}}\n",
        [f": models.{GPT}.kind: a model of openapi.yaml keeps its kind (image)"],
    ),
    "override adds a value without a price": (
        f"models:\n  {GPT}:\n    input: {MORE_RESOLUTIONS}\n",
        [f": models.{GPT}: costUsd has no value for", "resolution=8K"],
    ),
    "override with a default outside the enum": (
        f"models:\n  {GPT}:\n    input: {{properties: {{resolution: {{default: 8K}}}}}}\n",
        [f": models.{GPT}.input.properties.resolution.default: '8K' is not a value"],
    ),
    "override with a bad timing": (
        f"models:\n  {GPT}: {{timing: {{pendingMs: -1, processingMs: 5}}}}\n",
        [f": models.{GPT}: timing must not be negative"],
    ),
}


def bad_file(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    text, expected = BAD_FILES[case]
    path = tmp_path / "bad-models.yaml"
    if text is not None:
        path.write_text(text)
    return path, [str(path) + part for part in expected[:1]] + expected[1:]


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_stops_load_spec_and_create_app(tmp_path: Path, case: str) -> None:
    path, expected = bad_file(tmp_path, case)
    with pytest.raises(ModelsFileError) as raised:
        load_spec(models=path)
    message = str(raised.value)
    assert all(part in message for part in expected), message
    assert "\n" not in message
    with pytest.raises(ModelsFileError, match=r"bad-models\.yaml"):
        create_app(MockSettings(models=path, clock="virtual"))


def test_a_missing_file_stops_load_spec_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "no-models.yaml"
    with pytest.raises(ModelsFileError, match="cannot read the models file: No such file"):
        load_spec(models=path)
    with pytest.raises(ValidationError, match="no such file"):
        MockSettings(models=path)  # serve says `--models PATH: no such file` (test_settings.py)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_stops_serve_with_one_line(tmp_path: Path, case: str) -> None:
    path, expected = bad_file(tmp_path, case)
    result = subprocess.run(
        [*serve_command(), "serve", "--port", "1", "--models", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("mock-runbase: "), result.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_environment_names_the_file_too(tmp_path: Path) -> None:
    path, expected = bad_file(tmp_path, "entry key typo")
    result = subprocess.run(
        [*serve_command(), "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MOCK_RUNBASE_MODELS": str(path)},
    )
    assert result.returncode == 2
    assert expected[0] in result.stderr


@given(
    key=st.one_of(st.text(min_size=1), st.integers(), st.booleans()).filter(
        lambda k: k not in MODEL_KEYS
    ),
    model_id=st.sampled_from([NEW, GPT]),
)
def test_any_unknown_key_of_a_model_is_refused_by_name(key: Any, model_id: str) -> None:
    data = {"models": {model_id: {"name": "Fine", key: 1}}}
    with pytest.raises(ModelsFileError) as raised:
        merge_models(load_spec().document, data, "my-models.yaml")
    message = str(raised.value)
    assert message.startswith(f"my-models.yaml: models.{model_id}: unknown key {key!r}"), message
    assert "a model takes input, name, kind, costUsd, outputSize, video, timing" in message


def test_the_readme_example_is_a_good_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Your own models (`--models`)") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    example = section[start : section.index("```\n", start)]
    path = tmp_path / "models.yaml"
    path.write_text(example)
    spec = load_spec(models=path)
    model = spec.catalog.get(NEW)
    assert model is not None
    assert model.cost_usd(model.with_defaults({"size": "big"})) == 20000


def test_the_in_process_server_takes_a_models_file(models_file: Path) -> None:
    import mock_runbase

    with mock_runbase.serve(models=models_file) as mock:
        body = {"model": NEW, "input": {"prompt": "a fox"}}
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        created = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers)
        assert created.status_code == 200, created.text
        assert created.json()["costUsd"] == 10000


# --- the command line -------------------------------------------------------------------------


def test_serve_with_models_serves_them(models_file: Path) -> None:
    running = Server("--clock", "virtual", "--no-rate-limit", "--models", str(models_file))
    try:
        listed = httpx.get(f"{running.base}/_mock/models").json()["models"]
        assert {m["id"]: m["source"] for m in listed}[NEW] == "user"
        headers = {"Authorization": "Bearer sk-models"}
        body = {"model": NEW, "input": {"prompt": "a fox", "size": "big"}}
        created = httpx.post(f"{running.base}/v1/runs", json=body, headers=headers)
        assert created.status_code == 200, created.text
        assert created.json()["costUsd"] == 20000
        running.advance(30)
        run = httpx.get(f"{running.base}/v1/runs/{created.json()['id']}", headers=headers).json()
        assert run["status"] == "succeeded"
        png = httpx.get(run["output"]["urls"][0]).content
        assert Image.open(io.BytesIO(png)).size == (1024, 1024)
        assert httpx.get(f"{running.base}/openapi.yaml").content == (
            default_spec_path().read_bytes()
        )
    finally:
        code, output = running.stop()
    assert code == 0
    assert "Traceback" not in output
