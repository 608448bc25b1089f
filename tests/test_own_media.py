"""Your own media: ``--media-dir`` and a rule's ``effect.media``, through the HTTP API (on
both stores), the config file, the command line and the pytest plugin."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.cli import main
from mock_runbase.media.video import render_mp4
from mock_runbase.own_media import MediaDirectory, MediaError
from mock_runbase.scenarios import SCENARIOS
from mock_runbase.settings import MockSettings
from mock_runbase.spec import compile_pointer
from mock_runbase.startup import media_line
from tests.conftest import KEY, Mock, MockFactory

VIDEO_MODEL = "bytedance/seedance-1-lite"
IMAGE_MODEL = "openai/gpt-image-2"
FILES = {  # name -> (size, Content-Type)
    "cat.png": ((640, 480), "image/png"),
    "photo.jpg": ((300, 200), "image/jpeg"),
    "pets/dog.webp": ((123, 45), "image/webp"),
    "clip.mp4": ((160, 96), "video/mp4"),
}


def image_bytes(size: tuple[int, int], kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(out, format=kind)
    return out.getvalue()


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    (folder / "pets").mkdir(parents=True)
    (folder / "cat.png").write_bytes(image_bytes((640, 480), "PNG"))
    (folder / "photo.jpg").write_bytes(image_bytes((300, 200), "JPEG"))
    (folder / "pets" / "dog.webp").write_bytes(image_bytes((123, 45), "WEBP"))
    clip = render_mp4(width=160, height=96, duration_s=1, fps=4, audio=False,
                      title_lines=["mine"], seed=7)  # fmt: skip
    (folder / "clip.mp4").write_bytes(clip)
    (folder / "fake.png").write_bytes(image_bytes((10, 10), "JPEG"))
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "notes.txt").write_text("not media")
    (tmp_path / "outside.png").write_bytes(image_bytes((5, 5), "PNG"))
    return folder


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mock(make_mock: MockFactory, media_dir: Path) -> Mock:
    return make_mock(media_dir=media_dir)


def add_rule(mock: Mock, media: str, scenario: str = "succeed", **match: str) -> httpx.Response:
    body = {"match": match, "effect": {"scenario": scenario, "media": media}}
    return mock.client.post("/_mock/rules", json=body)


def finished(mock: Mock, model: str, **fields: Any) -> dict[str, Any]:
    created = mock.create_run(model, {"prompt": "known picture", **fields})
    assert created.status_code == 200, created.text
    mock.advance(3600)
    run: dict[str, Any] = mock.get(created.json()["id"]).json()
    assert run["status"] == "succeeded", run
    return run


def mock_view(mock: Mock, run_id: str) -> dict[str, Any]:
    [run] = [r for r in mock.client.get("/_mock/runs").json()["runs"] if r["id"] == run_id]
    view: dict[str, Any] = run["mock"]
    return view


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_run_of_a_media_rule_serves_the_files_bytes_and_reports_its_size(
    mock: Mock, media_dir: Path, name: str
) -> None:
    size, content_type = FILES[name]
    model = VIDEO_MODEL if content_type == "video/mp4" else IMAGE_MODEL
    assert add_rule(mock, name).status_code == 201
    run = finished(mock, model)
    [url] = run["output"]["urls"]
    assert url.endswith("." + name.rsplit(".", 1)[1])
    download = mock.client.get(url)
    assert download.status_code == 200
    assert download.content == (media_dir / name).read_bytes()
    assert download.headers["content-type"] == content_type
    assert download.headers["x-mock-media"] == name
    view = mock_view(mock, run["id"])
    assert (view["width"], view["height"]) == size
    assert view["media"] == name


def test_its_download_answers_head_ranges_and_etags_as_a_generated_one(
    mock: Mock, media_dir: Path
) -> None:
    add_rule(mock, "cat.png")
    [url] = finished(mock, IMAGE_MODEL)["output"]["urls"]
    content = (media_dir / "cat.png").read_bytes()
    head = mock.client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(content))
    part = mock.client.get(url, headers={"Range": "bytes=8-23"})
    assert part.status_code == 206 and part.content == content[8:24]
    assert part.headers["content-range"] == f"bytes 8-23/{len(content)}"
    etag = head.headers["etag"]
    assert mock.client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert mock.client.get(url, headers={"Range": f"bytes={len(content)}-"}).status_code == 416


def test_a_media_rule_without_a_model_serves_models_of_its_kind_only(mock: Mock) -> None:
    add_rule(mock, "photo.jpg")
    image = finished(mock, "google/nano-banana", aspect_ratio="16:9")
    assert image["output"]["urls"][0].endswith(".jpg")
    video = finished(mock, VIDEO_MODEL)  # the rule matches no video model: a rendered MP4
    assert video["output"]["urls"][0].endswith(".mp4")
    assert "media" not in mock_view(mock, video["id"])
    [rule] = mock.client.get("/_mock/rules").json()["rules"]
    assert (rule["matches"], rule["hits"]) == (1, 1)
    assert rule["effect"] == {"scenario": "succeed", "media": "photo.jpg"}


def test_media_with_slow_or_latency_still_serves_the_file(mock: Mock, media_dir: Path) -> None:
    assert add_rule(mock, "cat.png", "slow", model=IMAGE_MODEL).status_code == 201
    [url] = finished(mock, IMAGE_MODEL)["output"]["urls"]
    assert mock.client.get(url).content == (media_dir / "cat.png").read_bytes()


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"media": "../outside.png"}, ["effect.media: '../outside.png' is outside --media-dir"]),
        ({"media": "/etc/hosts.png"}, ["is outside --media-dir", "without .. or a leading /"]),
        ({"media": "pets/../../outside.png"}, ["is outside --media-dir"]),
        ({"media": "dog.png"}, ["no file 'dog.png' in --media-dir", "cat.png, clip.mp4"]),
        ({"media": "notes.txt"}, ["not a kind of file the mock serves", ".png, .jpg, .jpeg"]),
        ({"media": "fake.png"}, ["'fake.png' is a JPEG image, not PNG as its name says"]),
        ({"media": "broken.mp4"}, ["'broken.mp4' is not an MP4 video"]),
        ({"media": "pets"}, ["not a kind of file"]),
        ({"media": "cat.png", "model": VIDEO_MODEL},
         [f"'cat.png' is an image and {VIDEO_MODEL} makes videos"]),
        ({"media": "clip.mp4", "model": IMAGE_MODEL},
         [f"'clip.mp4' is a video and {IMAGE_MODEL} makes images"]),
        ({"media": "cat.png", "scenario": "fail"},
         ["fail makes no run that succeeds", "use media with succeed, slow, latency"]),
        ({"media": "cat.png", "scenario": "stuck"}, ["stuck makes no run that succeeds"]),
        ({"media": "cat.png", "scenario": "latency", "endpoint": "get"},
         ["media is the file of a run a create makes: use endpoint create or any"]),
        ({"media": ""}, ["effect.media: "]),
    ],
)  # fmt: skip
def test_a_media_rule_it_cannot_serve_is_400_naming_it_and_adds_nothing(
    mock: Mock, rule: dict[str, str], words: list[str]
) -> None:
    rule = dict(rule)  # the same parameters serve both stores
    media, scenario = rule.pop("media"), rule.pop("scenario", "succeed")
    response = add_rule(mock, media, scenario, **rule)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    message = response.json()["error"]["message"]
    assert message.startswith("effect.media: ") or media == ""
    for word in words:
        assert word in message, message
    assert mock.client.get("/_mock/rules").json()["rules"] == []


def test_media_without_a_media_dir_is_400_saying_how_to_give_one(make_mock: MockFactory) -> None:
    mock = make_mock()
    response = add_rule(mock, "cat.png")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "effect.media: 'cat.png' names a file of --media-dir, and the mock was started without "
        "one: start it with --media-dir DIR (MOCK_RUNBASE_MEDIA_DIR)"
    )


def test_a_file_gone_after_its_rule_was_added_is_a_clear_error_not_another_file(
    mock: Mock, media_dir: Path
) -> None:
    add_rule(mock, "photo.jpg")
    [url] = finished(mock, IMAGE_MODEL)["output"]["urls"]
    (media_dir / "photo.jpg").unlink()
    gone = mock.client.get(url)
    assert gone.status_code == 404
    assert gone.json()["error"] == {
        "code": "file_not_found",
        "message": f"effect.media of the rule: no file 'photo.jpg' in --media-dir "
        f"{media_dir.resolve()} (it has broken.mp4, cat.png, clip.mp4, fake.png, pets/dog.webp)",
    }
    before = mock.balance()
    refused = mock.create_run(IMAGE_MODEL, {"prompt": "x"})
    assert refused.status_code == 500
    assert "effect.media of the rule: no file 'photo.jpg'" in refused.json()["error"]["message"]
    assert mock.balance() == before  # nothing was created or charged


def test_a_changed_file_is_read_again(mock: Mock, media_dir: Path) -> None:
    add_rule(mock, "cat.png")
    finished(mock, IMAGE_MODEL)
    bigger = image_bytes((800, 600), "PNG")
    (media_dir / "cat.png").write_bytes(bigger)
    os.utime(media_dir / "cat.png", ns=(1, 1))  # a new modification time, whatever the clock
    run = finished(mock, IMAGE_MODEL)
    view = mock_view(mock, run["id"])
    assert (view["width"], view["height"]) == (800, 600)
    assert mock.client.get(run["output"]["urls"][0]).content == bigger


# --- names, over their whole space --------------------------------------------------------------

PIECES = ["..", ".", "", "pets", "cat.png", "dog.webp", "outside.png", "media", "clip.mp4", "x"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=5),
       separator=st.sampled_from(["/", "\\"]), absolute=st.booleans())  # fmt: skip
def test_a_name_is_served_only_if_it_is_a_file_inside_the_directory(
    media_dir: Path, pieces: list[str], separator: str, absolute: bool
) -> None:
    name = ("/" if absolute else "") + separator.join(pieces)
    directory = MediaDirectory(media_dir)
    inside = media_dir.resolve()
    try:
        found = directory.file(name)
    except MediaError as error:
        assert str(error)  # refused, saying why
        return
    assert found.path.is_file() and found.path.is_relative_to(inside)
    assert found.path == (inside / name).resolve()
    assert not absolute and ".." not in pieces and "\\" not in name


# --- the config file, the command line, the plugin ----------------------------------------------


def test_a_config_rule_with_media_serves_it_and_a_bad_one_stops_start_up(
    media_dir: Path, tmp_path: Path, make_mock: MockFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - {effect: {scenario: succeed, media: pets/dog.webp}}\n")
    mock = make_mock(media_dir=media_dir, config=good)
    [url] = finished(mock, IMAGE_MODEL)["output"]["urls"]
    assert mock.client.get(url).content == (media_dir / "pets" / "dog.webp").read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {effect: {scenario: succeed, media: cat.png}, "
                   f"match: {{model: {VIDEO_MODEL}}}}}\n")  # fmt: skip
    assert main(["serve", "--config", str(bad), "--media-dir", str(media_dir)]) == 2
    error = capsys.readouterr().err
    assert "rules[0].effect.media: 'cat.png' is an image and" in error, error


def test_serve_refuses_a_media_dir_that_is_a_file(
    media_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--media-dir", str(media_dir / "cat.png")]) == 2
    assert "--media-dir" in capsys.readouterr().err


def test_the_plugin_serves_your_media_through_runbase_settings(
    pytester: pytest.Pytester, media_dir: Path
) -> None:
    pytester.makeconftest(
        f"""
        from dataclasses import replace

        import pytest
        from mock_runbase.testing import TEST_DEFAULTS


        @pytest.fixture(scope="session")
        def runbase_settings():
            return replace(TEST_DEFAULTS, media_dir={str(media_dir)!r})
        """
    )
    pytester.makepyfile(
        f"""
        import httpx
        import pytest


        def test_known_picture(runbase_mock):
            runbase_mock.add_rule("succeed", media="cat.png", model="openai/gpt-image-2")
            headers = {{"Authorization": f"Bearer {{runbase_mock.api_key}}"}}
            body = {{"model": "openai/gpt-image-2", "input": {{"prompt": "x"}}}}
            run = httpx.post(f"{{runbase_mock.base_url}}/runs", json=body, headers=headers).json()
            runbase_mock.clock.advance(10)
            done = httpx.get(f"{{runbase_mock.base_url}}/runs/{{run['id']}}", headers=headers)
            with open({str(media_dir / "cat.png")!r}, "rb") as file:
                assert httpx.get(done.json()["output"]["urls"][0]).content == file.read()
            assert runbase_mock.runs[0]["mock"]["width"] == 640


        def test_a_bad_name_raises(runbase_mock):
            with pytest.raises(ValueError, match="no file 'dog.png'"):
                runbase_mock.add_rule("succeed", media="dog.png")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_a_key_of_the_test_account_sees_its_media_runs_only(mock: Mock) -> None:
    scoped = mock.client.post(
        "/_mock/rules",
        json={"effect": {"scenario": "succeed", "media": "cat.png"}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert scoped.status_code == 201
    other = mock.create_run(IMAGE_MODEL, {"prompt": "x"}, key="sk-test-someone-else")
    mock.advance(60)
    url = mock.get(other.json()["id"], key="sk-test-someone-else").json()["output"]["urls"][0]
    assert url.endswith(".png") and "x-mock-media" not in mock.client.get(url).headers


def test_the_start_up_summary_counts_the_files_a_rule_may_name(media_dir: Path) -> None:
    assert media_line(media_dir) == f"{media_dir} (4 image, 2 video for rules' effect.media)"


# --- the control document: what a rule may name -------------------------------------------------


def test_the_served_document_lists_the_files_a_rule_may_name(
    make_mock: MockFactory, media_dir: Path
) -> None:
    def media_schema(mock: Mock) -> dict[str, Any]:
        document = mock.client.get("/_mock/openapi.json").json()
        rule = document["components"]["schemas"]["MockRuleInput"]
        schema: dict[str, Any] = rule["properties"]["effect"]["properties"]["media"]
        return schema

    assert media_schema(make_mock())["not"] == {}  # without --media-dir, no name is valid
    served = media_schema(make_mock(media_dir=media_dir))
    assert "not" not in served
    assert served["enum"] == ["broken.mp4", "cat.png", "clip.mp4", "fake.png", "pets/dog.webp",
                              "photo.jpg"]  # fmt: skip


def test_a_file_added_after_start_is_refused_naming_the_files_it_started_with(
    mock: Mock, media_dir: Path
) -> None:
    (media_dir / "late.png").write_bytes(image_bytes((4, 4), "PNG"))
    response = add_rule(mock, "late.png")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message == (
        f"effect.media: 'late.png' is not one of the files --media-dir {media_dir.resolve()} "
        "held when the mock started (broken.mp4, cat.png, clip.mp4, fake.png, pets/dog.webp, "
        "photo.jpg), which the served control document lists: name one of them, or restart "
        "the mock to serve a file added since"
    )


CLEAN_MEDIA = Path(tempfile.mkdtemp(prefix="mock-runbase-media-"))
(CLEAN_MEDIA / "cat.png").write_bytes(image_bytes((64, 48), "PNG"))
(CLEAN_MEDIA / "clip.mp4").write_bytes(
    render_mp4(width=64, height=48, duration_s=1, fps=2, audio=False, title_lines=[], seed=1)
)
CLEAN_APP = TestClient(
    create_app(MockSettings(clock="virtual", rate_limit=None, media_dir=CLEAN_MEDIA))
)
SERVED_RULE = compile_pointer(
    CLEAN_APP.get("/_mock/openapi.json").json(), "#/components/schemas/MockRuleInput"
)


@settings(max_examples=150)
@given(
    media=st.sampled_from(["cat.png", "clip.mp4", "dog.png"]),
    model=st.sampled_from([None, IMAGE_MODEL, VIDEO_MODEL]),
    scenario=st.sampled_from(sorted(SCENARIOS)),
    endpoint=st.sampled_from([None, "create", "get", "any"]),
)
def test_the_served_document_accepts_exactly_the_media_rules_the_mock_adds(
    media: str, model: str | None, scenario: str, endpoint: str | None
) -> None:
    """What the served document says of ``effect.media`` (its files, each kind with its models,
    the scenarios and endpoints) is what the rule checks do, rule for rule. (schemathesis
    cannot generate from a document whose directory holds both kinds: two ``if`` on one
    field are beyond it.)"""
    match = {name: value for name, value in (("model", model), ("endpoint", endpoint)) if value}
    body = {"match": match, "effect": {"scenario": scenario, "media": media}}
    response = CLEAN_APP.post("/_mock/rules", json=body)
    assert (response.status_code == 201) == SERVED_RULE.is_valid(body), response.text
    if response.status_code == 201:
        CLEAN_APP.delete(f"/_mock/rules/{response.json()['id']}")
    else:
        assert response.json()["error"]["message"].startswith(("effect.", "match.")), response.text


def test_a_saved_state_keeps_a_runs_own_file_and_a_mock_without_it_refuses_the_state(
    mock: Mock, make_mock: MockFactory, media_dir: Path
) -> None:
    assert add_rule(mock, "pets/dog.webp").status_code == 201
    run = finished(mock, IMAGE_MODEL)
    state = mock.client.get("/_mock/state").json()
    [entry] = state["runs"]
    assert entry["media"] == "pets/dog.webp"
    assert entry["fileName"].endswith(".webp")

    mock.client.post("/_mock/reset")
    assert mock.client.put("/_mock/state", json=state).status_code == 200
    [url] = mock.get(run["id"]).json()["output"]["urls"]
    assert mock.client.get(url).content == (media_dir / "pets" / "dog.webp").read_bytes()
    assert (mock_view(mock, run["id"])["width"], mock_view(mock, run["id"])["height"]) == (123, 45)

    without = make_mock()  # no --media-dir
    refused = without.client.put("/_mock/state", json=state)
    assert refused.status_code == 400, refused.text
    assert "rules[0].rule.effect.media" in refused.text and "--media-dir" in refused.text
    refused = without.client.put("/_mock/state", json={**state, "rules": []})
    assert refused.status_code == 400, refused.text
    assert "runs[0].media" in refused.text and "--media-dir" in refused.text
    assert without.client.get("/_mock/state").json()["runs"] == []

    entry["media"] = "clip.mp4"  # a video for an image model's run
    wrong_kind = mock.client.put("/_mock/state", json=state)
    assert wrong_kind.status_code == 400
    assert "runs[0].media" in wrong_kind.text and "video" in wrong_kind.text
