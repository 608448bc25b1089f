"""Faults on the generated files (``GET``/``HEAD /files/generated/...``), on both stores.

By the ``X-Mock-Scenario`` header, or by a rule with ``match.endpoint: file``: a file's GET
carries no key, so a rule matches the run the file belongs to (its key, account, model, input
and prompt). ``cdn-lag`` answers 404 until ``ms`` after the run succeeded, on the mock's clock.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import GPT, KEY, OTHER_KEY, Mock
from tests.test_app import error_of

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both stores."""
    param: str = request.param
    return param


def finished_file(mock: Mock, key: str = KEY, prompt: str = "a lighthouse") -> tuple[str, str]:
    """A run of ``key`` that has just succeeded (now, on the virtual clock), and the path of
    its file."""
    body = {"model": GPT, "input": {"prompt": prompt}}
    created = mock.client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"})
    run_id = created.json()["id"]
    forced = mock.client.post(f"/_mock/runs/{run_id}/state", json={"status": "succeeded"})
    assert forced.status_code == 200, forced.text
    url = mock.get(run_id, key=key).json()["output"]["urls"][0]
    return run_id, url.removeprefix("http://mock.test")


def fetch(mock: Mock, path: str, scenario: str | None = None) -> httpx.Response:
    return mock.client.get(path, headers={"X-Mock-Scenario": scenario} if scenario else {})


def add_rule(mock: Mock, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    response = mock.client.post("/_mock/rules", json=body, headers=headers or {})
    assert response.status_code == 201, response.text


def counts(mock: Mock) -> list[tuple[int, int]]:
    return [(r["matches"], r["hits"]) for r in mock.client.get("/_mock/rules").json()["rules"]]


# --- the header -------------------------------------------------------------------------------


def test_a_file_not_found_rule_answers_404_that_many_times_then_the_file(mock: Mock) -> None:
    _, path = finished_file(mock)
    add_rule(mock, {"match": {"endpoint": "file"}, "effect": {"scenario": "file-not-found"},
                    "times": 2})  # fmt: skip
    answers = [fetch(mock, path) for _ in range(3)]
    assert [error_of(a) for a in answers[:2]] == [(404, "file_not_found")] * 2
    assert answers[2].status_code == 200
    assert answers[2].content[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_header_answers_500_on_a_file(mock: Mock) -> None:
    _, path = finished_file(mock)
    assert error_of(fetch(mock, path, "error-500")) == (500, "internal_error")
    assert error_of(fetch(mock, path, "error-500; message=CDN down")) == (500, "internal_error")
    assert fetch(mock, path, "error-500; message=CDN down").json()["error"]["message"] == "CDN down"
    assert fetch(mock, path).status_code == 200


def test_the_header_delays_a_file(mock: Mock) -> None:
    _, path = finished_file(mock)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    mock.client.app.service.sleep = sleep  # type: ignore[attr-defined]
    assert fetch(mock, path, "latency; ms=250").status_code == 200
    assert mock.client.head(path, headers={"X-Mock-Scenario": "latency"}).status_code == 200
    assert slept == [0.25, 1.0]


def test_the_header_drops_a_file(mock: Mock) -> None:
    _, path = finished_file(mock)
    with pytest.raises(ConnectionResetError, match=r"\(drop\)"):
        fetch(mock, path, "drop")
    [*_, entry] = mock.client.get("/_mock/requests").json()["requests"]
    assert (entry["path"], entry["dropped"]) == (path, True)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lag_ms=st.integers(0, 20_000), waited_ms=st.integers(0, 25_000))
@example(lag_ms=3000, waited_ms=2999)
@example(lag_ms=3000, waited_ms=3000)
@example(lag_ms=0, waited_ms=0)
def test_cdn_lag_answers_404_until_its_ms_after_the_run_succeeded(
    mock: Mock, lag_ms: int, waited_ms: int
) -> None:
    _, path = finished_file(mock)
    mock.advance(waited_ms / 1000)
    answer = fetch(mock, path, f"cdn-lag; ms={lag_ms}")
    if waited_ms < lag_ms:
        assert error_of(answer) == (404, "file_not_found")
        head = mock.client.head(path, headers={"X-Mock-Scenario": f"cdn-lag; ms={lag_ms}"})
        assert head.status_code == 404
    else:
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
    assert fetch(mock, path).status_code == 200  # the lag is the request's, not the file's


def test_cdn_lag_defaults_to_five_seconds_and_holds_for_a_conditional_get(mock: Mock) -> None:
    _, path = finished_file(mock)
    etag = fetch(mock, path).headers["etag"]
    mock.advance(4.999)
    headers = {"X-Mock-Scenario": "cdn-lag", "If-None-Match": etag}
    assert mock.client.get(path, headers=headers).status_code == 404
    mock.advance(0.001)
    assert mock.client.get(path, headers=headers).status_code == 304


@pytest.mark.parametrize(
    ("scenario", "words"),
    [
        ("cdn-lag; ms=abc", "ms is a whole number of milliseconds"),
        ("cdn-lag; ms=600001", "from 0 to 600000"),
        ("cdn-lag; code=x", "cdn-lag takes ms, not 'code'"),
    ],
)
def test_a_parameter_cdn_lag_cannot_use_is_refused(mock: Mock, scenario: str, words: str) -> None:
    _, path = finished_file(mock)
    answer = fetch(mock, path, scenario)
    assert error_of(answer) == (400, "invalid_mock_scenario")
    assert words in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("where", "scenario", "warning"),
    [
        ("file", "fail", "fail applies to creates only; not applied to a file"),
        ("file", "rate-limit", "rate-limit applies to creates and polls; not applied to a file"),
        ("get", "cdn-lag", "cdn-lag applies to files only; not applied to a poll"),
        ("create", "cdn-lag", "cdn-lag applies to files only; not applied to a create"),
    ],
)
def test_a_scenario_that_does_not_apply_is_answered_with_a_warning(
    mock: Mock, where: str, scenario: str, warning: str
) -> None:
    run_id, path = finished_file(mock)
    headers = {"X-Mock-Scenario": scenario}
    answer = {
        "file": lambda: mock.client.get(path, headers=headers),
        "get": lambda: mock.client.get(f"/v1/runs/{run_id}", headers={**AUTH, **headers}),
        "create": lambda: mock.create(scenario=scenario),
    }[where]()
    assert answer.status_code == 200
    assert answer.headers["x-mock-warning"] == f"X-Mock-Scenario: {warning}"


def test_a_prompt_tag_of_cdn_lag_on_a_create_is_a_warning(mock: Mock) -> None:
    body = {"model": GPT, "input": {"prompt": "a fox [mock:cdn-lag]"}}
    answer = mock.client.post("/v1/runs", json=body, headers=AUTH)
    assert answer.status_code == 200
    assert "cdn-lag applies to files only" in answer.headers["x-mock-warning"]


# --- rules ------------------------------------------------------------------------------------


def test_a_file_rule_matches_the_run_the_file_belongs_to(mock: Mock) -> None:
    add_rule(
        mock,
        {
            "match": {"endpoint": "file", "prompt_regex": "^slow", "key": KEY, "model": GPT},
            "effect": {"scenario": "cdn-lag", "ms": 3000},
        },
    )
    _, lagging = finished_file(mock, prompt="slow cdn")
    _, other_prompt = finished_file(mock, prompt="fast cdn")
    _, other_key = finished_file(mock, key=OTHER_KEY, prompt="slow cdn")
    assert error_of(fetch(mock, lagging)) == (404, "file_not_found")
    assert fetch(mock, other_prompt).status_code == 200
    assert fetch(mock, other_key).status_code == 200
    mock.advance(3)
    assert fetch(mock, lagging).status_code == 200
    assert counts(mock) == [(2, 2)]  # the matches of its run's files, lagging or past the lag


def test_a_scoped_rule_on_files_touches_its_accounts_files_only(mock: Mock) -> None:
    add_rule(mock, {"match": {"endpoint": "file"}, "effect": {"scenario": "error-500"}}, AUTH)
    _, mine = finished_file(mock)
    _, theirs = finished_file(mock, key=OTHER_KEY)
    assert error_of(fetch(mock, mine)) == (500, "internal_error")
    assert fetch(mock, theirs).status_code == 200


def test_a_rule_for_any_endpoint_leaves_the_files_alone_and_a_file_rule_the_api(
    mock: Mock,
) -> None:
    add_rule(mock, {"effect": {"scenario": "error-500"}, "match": {"key": OTHER_KEY}})
    add_rule(mock, {"match": {"endpoint": "file", "key": KEY}, "effect": {"scenario": "drop"}})
    run_id, path = finished_file(mock)
    assert mock.get(run_id).status_code == 200
    with pytest.raises(ConnectionResetError):
        fetch(mock, path)
    assert error_of(mock.create(key=OTHER_KEY)) == (500, "internal_error")
    assert counts(mock)[0] == (1, 1)  # the create of OTHER_KEY only, never a file


def test_a_file_rule_fires_by_its_budget_and_the_header_names_what_it_replaced(
    mock: Mock,
) -> None:
    add_rule(mock, {"match": {"endpoint": "file"}, "effect": {"scenario": "error-500"}, "every": 2})
    _, path = finished_file(mock)
    first = fetch(mock, path, "latency; ms=0")
    second = fetch(mock, path, "latency; ms=0")
    assert first.status_code == 200 and "x-mock-warning" not in first.headers
    assert error_of(second) == (500, "internal_error")
    assert second.headers["x-mock-warning"] == (
        "X-Mock-Scenario: latency not applied, rule rule_1 fired (error-500)"
    )
    assert counts(mock) == [(2, 1)]


def test_a_file_no_run_made_matches_no_rule_but_takes_the_header(mock: Mock) -> None:
    add_rule(mock, {"match": {"endpoint": "file"}, "effect": {"scenario": "error-500"}})
    assert error_of(fetch(mock, "/files/generated/nothere.png")) == (404, "file_not_found")
    assert counts(mock) == [(0, 0)]
    with pytest.raises(ConnectionResetError):
        fetch(mock, "/files/generated/nothere.png", "reset")
