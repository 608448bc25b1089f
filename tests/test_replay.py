"""Replaying a cassette: every create of a recorded run replays its lifecycle from the first
state, and ``--replay-strict`` answers what the cassette lacks with 501 ``not_recorded``,
naming the closest recorded request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.cassette import Cassette
from mock_runbase.control_spec import load_control_spec
from mock_runbase.proxy import Proxy
from mock_runbase.replay_diff import body_differences, flat
from mock_runbase.settings import MockSettings
from mock_runbase.testing import TEST_DEFAULTS, MockServer
from tests.served import Server
from tests.test_proxy import Served

KEY = "sk-record-secret-4321"
BODY = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox", "aspect_ratio": "16:9"}}
LIFECYCLE = ["pending", "processing", "succeeded"]


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run recorded through the proxy, polled through its states, its file downloaded;
    and a poll of a run no one made."""
    path = tmp_path_factory.mktemp("replay") / "fox.jsonl"
    upstream = MockServer(MockSettings(timing="fast", clock="virtual", rate_limit=None)).start()
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with Served(Proxy(upstream.origin, record=path)) as proxy:
            created = httpx.post(f"{proxy}/v1/runs", json=BODY, headers=headers).json()
            for seconds in (0, 0.02, 5):
                httpx.post(f"{proxy}/_mock/clock/advance", json={"seconds": seconds})
                run = httpx.get(f"{proxy}/v1/runs/{created['id']}", headers=headers).json()
            httpx.get(run["output"]["urls"][0])
            httpx.get(f"{proxy}/v1/runs/run_nobody", headers=headers)
    finally:
        upstream.stop()
    return path


def replayer(cassette: Path, strict: bool = True) -> TestClient:
    settings = MockSettings(timing="instant", clock="virtual", rate_limit=None,
                            replay=cassette, replay_strict=strict)  # fmt: skip
    return TestClient(create_app(settings), base_url="http://replay.test")


@pytest.fixture
def client(cassette: Path) -> Iterator[TestClient]:
    with replayer(cassette) as client:
        yield client


HEADERS = {"Authorization": "Bearer sk-ci-offline"}


def create(client: TestClient, body: Any = BODY, **headers: str) -> httpx.Response:
    return client.post("/v1/runs", json=body, headers={**HEADERS, **headers})


def poll(client: TestClient, run_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/runs/{run_id}", headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["x-mock-replayed"] == "1"
    body: dict[str, Any] = response.json()
    return body


def lifecycle(client: TestClient, run_id: str, polls: int = 4) -> list[str]:
    views = [poll(client, run_id) for _ in range(polls)]
    assert {view["id"] for view in views} == {run_id}
    return [view["status"] for view in views]


def recorded_id(cassette: Path) -> str:
    [first, *_] = Cassette.load(cassette).exchanges
    run_id: str = orjson.loads(first.response_body)["id"]
    return run_id


def test_every_create_replays_the_recorded_run_from_its_first_state(
    client: TestClient, cassette: Path
) -> None:
    first, second, third = (create(client).json()["id"] for _ in range(3))
    assert first == recorded_id(cassette)  # the first replay is the recording itself
    assert len({first, second, third}) == 3
    assert all(run_id.startswith("run_") and len(run_id) == 26 for run_id in (second, third))
    assert lifecycle(client, first) == [*LIFECYCLE, "succeeded"]
    assert lifecycle(client, second, 2) == LIFECYCLE[:2]  # interleaved: each its own pace
    assert lifecycle(client, third) == [*LIFECYCLE, "succeeded"]
    assert lifecycle(client, second, 2) == ["succeeded", "succeeded"]
    done = poll(client, second)
    [url] = done["output"]["urls"]
    assert url.startswith("http://replay.test/files/generated/")
    assert client.get(url).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_replayed_ids_are_the_same_on_every_replay(cassette: Path) -> None:
    def ids() -> list[str]:
        with replayer(cassette) as client:
            return [create(client).json()["id"] for _ in range(3)]

    assert ids() == ids()


def test_a_reset_rewinds_the_cassette(client: TestClient, cassette: Path) -> None:
    create(client)
    again = create(client).json()["id"]
    lifecycle(client, again)
    client.post("/_mock/reset")
    assert create(client).json()["id"] == recorded_id(cassette)
    assert lifecycle(client, recorded_id(cassette), 1) == ["pending"]


NOT_RECORDED = load_control_spec().compile(
    "#/components/responses/NotRecorded/content/application~1json/schema"
)


def refusal(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """A 501 as the control document describes it: its message, and the closest recording."""
    assert response.status_code == 501, response.text
    body = response.json()
    assert NOT_RECORDED.is_valid(body), body
    assert body["error"]["code"] == "not_recorded"
    return body["error"]["message"], body["closest"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "told"),
    [
        ("POST", "/v1/runs", {**BODY, "input": {**BODY["input"], "prompt": "a cat"}}, HEADERS,
         'POST /v1/runs (input.prompt "a fox" recorded, "a cat" sent)'),
        ("POST", "/api/v1/runs", {**BODY, "input": {**BODY["input"], "resolution": "2K"}}, HEADERS,
         'POST /v1/runs (input.resolution only sent ("2K"))'),
        ("POST", "/v1/runs", {"model": "openai/gpt-image-2"}, HEADERS,
         'POST /v1/runs (input.aspect_ratio only recorded ("16:9"); input.prompt only recorded'),
        ("POST", "/v1/runs", BODY, {},
         "POST /v1/runs (recorded with an Authorization header, sent without)"),
        ("GET", "/v1/runs/run_nobodx", None, HEADERS,
         "GET /v1/runs/run_nobody (path /runs/run_nobody recorded, /runs/run_nobodx sent)"),
        ("DELETE", "/v1/runs/run_nobody", None, HEADERS,
         "GET /v1/runs/run_nobody (method GET recorded, DELETE sent)"),
    ],
)  # fmt: skip
def test_an_unrecorded_request_is_501_naming_the_closest_recorded_one(
    client: TestClient,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    told: str,
) -> None:
    response = client.request(method, path, json=body, headers=headers)
    message, closest = refusal(response)
    assert message.startswith(
        f"{method} {path} is not in the cassette, and --replay-strict answers recorded "
        "requests only; closest recorded: #"
    ), message
    assert told in message, message
    assert closest["method"] in message and closest["path"] in message
    assert closest["differences"] and all(d in message for d in closest["differences"])
    assert client.get("/_mock/runs").json()["runs"] == []  # the mock made nothing


def test_refusals_are_journaled_with_their_code_and_replays_with_their_run(
    client: TestClient,
) -> None:
    run_id = create(client).json()["id"]
    lifecycle(client, run_id, 2)
    create(client, {**BODY, "input": {"prompt": "unrecorded"}})
    count = client.get("/_mock/requests/count", params={"code": "not_recorded"}).json()
    assert count == {"count": 1}
    assert client.get("/_mock/requests/count", params={"run": run_id}).json() == {"count": 3}


def test_the_mocks_own_pages_stay_the_mocks(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/_mock/clock/advance", json={"seconds": 1}).status_code == 200
    assert client.get("/_mock/clock").json()["now"] == "2026-06-01T12:00:01.000Z"


def test_without_strict_an_unrecorded_request_goes_to_the_mock(cassette: Path) -> None:
    with replayer(cassette, strict=False) as client:
        made = create(client, {**BODY, "input": {"prompt": "new"}})
        assert made.status_code == 200 and "x-mock-replayed" not in made.headers
        assert client.get("/v1/runs/run_else", headers=HEADERS).json()["error"]["code"] == (
            "run_not_found"
        )


# --- the body comparison, over JSON bodies -------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", ""]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(sent=json_values, recorded=json_values)
def test_bodies_differ_exactly_where_their_fields_do(sent: Any, recorded: Any) -> None:
    told = body_differences(orjson.dumps(sent), orjson.dumps(recorded))
    canonical = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in (sent, recorded)]
    if canonical[0] == canonical[1]:
        assert told == []
        return
    assert told, "different bodies are never told as the same"
    sent_fields, recorded_fields = dict(flat(sent)), dict(flat(recorded))
    differing = [
        name or "body"
        for name in sorted(sent_fields.keys() | recorded_fields.keys())
        if orjson.dumps(sent_fields.get(name, "<none>"))
        != orjson.dumps(recorded_fields.get(name, "<none>"))
    ]
    shown = [line.split(" ", 1)[0] for line in told if not line.startswith("and ")]
    assert shown == differing[: len(shown)]
    assert len(told) == min(len(differing), 6)  # five, then "and N more"


def test_bodies_that_are_not_json_are_told_by_size() -> None:
    assert body_differences(b"abc", b"{") == ["body of 1 bytes recorded, 3 sent (not both JSON)"]


# --- settings, the command line, the test fixtures -----------------------------------------------


def test_strict_replay_without_a_cassette_is_refused() -> None:
    with pytest.raises(ValueError, match="strict replay needs a cassette to replay"):
        MockSettings(replay_strict=True)


def test_serve_replays_strictly_and_says_so(cassette: Path) -> None:
    server = Server("--replay", str(cassette), "--replay-strict", "--clock", "virtual",
                    "--log-level", "warning")  # fmt: skip
    try:
        refused = httpx.post(f"{server.base}/v1/runs", json={}, headers=HEADERS)
        refusal(refused)
    finally:
        _, output = server.stop()
    assert f"replay:     9 recorded exchanges from {cassette}; anything else 501" in output


def test_a_fixture_server_replays_the_cassette_afresh_for_each_test(cassette: Path) -> None:
    server = MockServer(replace(TEST_DEFAULTS, replay=cassette, replay_strict=True)).start()
    try:
        for _ in range(2):  # two tests, each with a fresh mock
            mock = server.fresh()
            headers = {"Authorization": f"Bearer {mock.api_key}"}
            made = httpx.post(f"{mock.base_url}/runs", json=BODY, headers=headers).json()
            assert made["id"] == recorded_id(cassette)
            httpx.post(f"{mock.base_url}/runs", json={"model": "x"}, headers=headers)
            assert mock.count_requests(code="not_recorded") == 1
            assert mock.count_requests(run=made["id"]) == 1
    finally:
        server.stop()
