"""Hypothesis properties of the mock over HTTP (in process, virtual clock)."""

from __future__ import annotations

import io
import json
from typing import Any

import av
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from PIL import Image
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.clock import VirtualClock
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec
from tests.test_spec import ROOT
from tests.test_validation import MUTATIONS, valid_gpt_inputs

CATALOG = load_spec().catalog
CREATE_OPERATION = schemathesis.openapi.from_path(ROOT / "openapi.yaml")["/runs"]["POST"]
AUTH = {"Authorization": "Bearer sk-prop"}
ORDER = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2}
# Files are fetched for examples up to 5 s of 720p at 24 fps (any image); renders beyond cost
# seconds each, and tests/test_catalog.py decodes one video of every model.
MAX_PIXELS_RENDERED = 1280 * 720 * 24 * 5

# One app per module: each example resets it through the control API, as a user would.
CLOCK = VirtualClock()
APP = create_app(MockSettings(timing="fast", clock="virtual", rate_limit=None), clock=CLOCK)
CLIENT = TestClient(APP, base_url="http://mock.test")


def reset() -> None:
    assert CLIENT.post("/_mock/reset").status_code == 200


def account() -> dict[str, Any]:
    body: dict[str, Any] = CLIENT.get("/_mock/account", headers=AUTH).json()
    return body


@settings(max_examples=25)
@given(case=CREATE_OPERATION.as_strategy())
def test_any_valid_input_makes_a_pending_run_at_the_catalog_price_and_a_file_of_its_size(
    case: Any,
) -> None:
    reset()
    model = CATALOG.get(case.body["model"])
    assert model is not None
    full_input = model.with_defaults(case.body["input"])
    response = CLIENT.post("/v1/runs", content=json.dumps(case.body), headers=AUTH)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert created["costUsd"] == model.cost_usd(full_input)
    assert account()["balanceUsd"] == 100_000_000 - created["costUsd"]
    CLOCK.advance(1)
    run = CLIENT.get(f"/v1/runs/{created['id']}", headers=AUTH).json()
    assert run["status"] == "succeeded"
    [url] = run["output"]["urls"]
    assert url.endswith(f".{model.file_extension}")
    width, height = model.output_size(full_input)
    frames = model.duration_s(full_input) * model.fps(full_input)
    if width * height * max(frames, 1) > MAX_PIXELS_RENDERED:
        return  # the file of a long, large video is checked in tests/test_catalog.py
    media = CLIENT.get(url)
    assert media.status_code == 200
    if model.kind == "image":
        assert Image.open(io.BytesIO(media.content)).size == (width, height)
        return
    with av.open(io.BytesIO(media.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (width, height)
        assert (
            abs(float(container.duration or 0) / av.time_base - frames / model.fps(full_input))
            <= 0.1
        )


@st.composite
def invalid_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """(raw body, the code Runbase documents for it)."""
    kind = draw(st.sampled_from(["mutated input", "model", "input", "json", "unknown model"]))
    valid = draw(valid_gpt_inputs())
    if kind == "mutated input":
        mutated = MUTATIONS[draw(st.sampled_from(sorted(MUTATIONS)))](valid, draw)
        return json.dumps(
            {"model": "openai/gpt-image-2", "input": mutated}
        ).encode(), "invalid_input"
    if kind == "model":
        bad_model = draw(st.one_of(st.none(), st.integers(), st.lists(st.text(), max_size=2)))
        return json.dumps({"model": bad_model, "input": valid}).encode(), "missing_model"
    if kind == "input":
        bad_input = draw(st.one_of(st.none(), st.text(), st.lists(st.integers(), max_size=2)))
        return json.dumps(
            {"model": "openai/gpt-image-2", "input": bad_input}
        ).encode(), "missing_input"
    if kind == "unknown model":
        name = draw(st.text(min_size=1).filter(lambda m: CATALOG.get(m) is None))
        return json.dumps({"model": name, "input": valid}).encode(), "model_not_found"
    raw = draw(st.binary().filter(lambda b: not is_json(b)))
    return raw, "invalid_json"


def is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


@given(body_and_code=invalid_bodies())
def test_any_invalid_input_gets_its_documented_code_and_changes_nothing(
    body_and_code: tuple[bytes, str],
) -> None:
    raw, code = body_and_code
    before = account()
    response = CLIENT.post("/v1/runs", content=raw, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert account() == before


class Billing(RuleBasedStateMachine):
    """Creates, polls and clock moves in any order keep the documented balance identity."""

    def __init__(self) -> None:
        super().__init__()
        reset()
        self.start = account()["balanceUsd"]
        self.runs: dict[str, int] = {}  # id -> cost
        self.last_status: dict[str, str] = {}

    @rule(
        scenario=st.sampled_from(["succeed", "fail", "stuck", "slow"]),
        resolution=st.sampled_from(["1K", "2K"]),
    )
    def create(self, scenario: str, resolution: str) -> None:
        body = {"model": "openai/gpt-image-2", "input": {"prompt": "p", "resolution": resolution}}
        response = CLIENT.post("/v1/runs", json=body, headers={**AUTH, "X-Mock-Scenario": scenario})
        assert response.status_code == 200
        self.runs[response.json()["id"]] = response.json()["costUsd"]

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        status = CLIENT.get(f"/v1/runs/{run_id}", headers=AUTH).json()["status"]
        previous = self.last_status.get(run_id, "pending")
        assert ORDER[status] >= ORDER[previous]
        if ORDER[previous] == 2:
            assert status == previous
        self.last_status[run_id] = status

    @rule(seconds=st.sampled_from([0.001, 0.01, 0.02, 0.05, 0.3, 2.0]))
    def advance(self, seconds: float) -> None:
        CLOCK.advance(seconds)

    @invariant()
    def balance_is_start_minus_runs_not_failed(self) -> None:
        statuses = {
            run_id: CLIENT.get(f"/v1/runs/{run_id}", headers=AUTH).json()["status"]
            for run_id in self.runs
        }
        kept = sum(cost for run_id, cost in self.runs.items() if statuses[run_id] != "failed")
        assert account()["balanceUsd"] == self.start - kept
        assert account()["spentUsd"] == kept


TestBilling = Billing.TestCase
TestBilling.settings = settings(max_examples=30, stateful_step_count=25)
