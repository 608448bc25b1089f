"""Verification over HTTP: ``GET /_mock/requests/count`` and the journal's ``method``, ``code``
and ``run`` filters, on both stores, and the pytest handle's ``count_requests``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mock_runbase
from tests.conftest import KEY, OTHER_KEY, Mock, MockFactory

FILTER_VALUES: dict[str, list[Any]] = {
    "method": ["GET", "post", "HEAD", "DELETE"],
    "code": ["RATE_LIMITED", "rate_limited", "run_not_found", "generation_failed", "invalid_json"],
    "status": ["2xx", "4xx", "404", "429", "errors"],
    "path": ["/v1/runs", "/api/v1", "/files/generated"],
    "key": [KEY, OTHER_KEY[-4:]],
}


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Journaled:
    """A journal with one of everything: two runs (one failed), their polls and a download,
    a 404, a 400 and a 429, from two keys."""

    def __init__(self, mock: Mock) -> None:
        self.mock = mock
        self.made = mock.create().json()["id"]
        self.failed = mock.create(scenario="fail").json()["id"]
        mock.advance(60)
        done = mock.get(self.made).json()
        mock.get(self.made, prefix="/api/v1")
        mock.get(self.failed)
        url = done["output"]["urls"][0]
        self.file = url.removeprefix("http://mock.test")
        mock.client.get(self.file)
        mock.client.head(self.file)
        mock.get("run_nowhere", key=OTHER_KEY)
        mock.client.post("/v1/runs", content=b"{", headers={"Authorization": f"Bearer {KEY}"})
        mock.client.get(f"/v1/runs/{self.made}", headers={
            "Authorization": f"Bearer {KEY}", "X-Mock-Scenario": "rate-limit"})  # fmt: skip
        self.everything = self.listed({})

    def listed(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.mock.client.get("/_mock/requests", params=query)
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["requests"]
        return entries

    def count(self, query: dict[str, Any], **headers: str) -> int:
        response = self.mock.client.get("/_mock/requests/count", params=query, headers=headers)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"count"}
        count: int = response.json()["count"]
        return count


@pytest.fixture
def journaled(mock: Mock) -> Journaled:
    return Journaled(mock)


def kept(entry: dict[str, Any], query: dict[str, Any]) -> bool:
    """What each filter means, spelled out independently of the mock's own matcher."""
    status = entry["status"]

    def status_is(wanted: str) -> bool:
        if wanted == "errors":
            return status is None or status >= 400
        if status is None:
            return False
        return status // 100 == int(wanted[0]) if wanted.endswith("xx") else status == int(wanted)

    checks = {
        "method": lambda wanted: entry["method"] == wanted.upper(),
        "code": lambda wanted: entry["errorCode"] == wanted,
        "run": lambda wanted: entry["runId"] == wanted,
        "path": lambda wanted: entry["path"].startswith(wanted),
        "key": lambda wanted: entry["keyLast4"] == wanted[-4:],
        "status": status_is,
    }
    return all(checks[name](value) for name, value in query.items())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(data=st.data())
def test_the_count_is_how_many_entries_the_same_filters_list(
    journaled: Journaled, data: st.DataObject
) -> None:
    values = {**FILTER_VALUES, "run": [journaled.made, journaled.failed, "run_nowhere", "run_x"]}
    names = data.draw(st.sets(st.sampled_from(sorted(values)), max_size=3))
    query = {name: data.draw(st.sampled_from(values[name])) for name in sorted(names)}
    expected = [e for e in journaled.everything if kept(e, query)]
    assert journaled.listed(query) == expected
    assert journaled.count(query) == len(expected)


def test_run_finds_the_create_its_polls_and_the_downloads_of_its_file(
    journaled: Journaled,
) -> None:
    entries = journaled.listed({"run": journaled.made})
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/v1/runs", 200),
        ("GET", f"/v1/runs/{journaled.made}", 200),
        ("GET", f"/api/v1/runs/{journaled.made}", 200),
        ("GET", journaled.file, 200),
        ("HEAD", journaled.file, 200),
        ("GET", f"/v1/runs/{journaled.made}", 429),
    ]
    assert journaled.count({"run": journaled.made, "method": "head"}) == 1
    assert journaled.count({"run": journaled.failed}) == 2  # its create and its poll


def test_code_counts_the_answers_that_carried_it_exactly(journaled: Journaled) -> None:
    assert journaled.count({"code": "RATE_LIMITED"}) == 1
    assert journaled.count({"code": "rate_limited"}) == 0  # the documented spelling only
    assert journaled.count({"code": "generation_failed", "run": journaled.failed}) == 1
    assert journaled.count({"code": "invalid_json", "method": "POST", "status": "400"}) == 1
    assert journaled.count({"code": "run_not_found"}) == 1


def test_a_scoped_count_counts_that_accounts_requests_only(journaled: Journaled) -> None:
    everyone = journaled.count({})
    mine = journaled.count({}, Authorization=f"Bearer {KEY}")
    theirs = journaled.count({}, Authorization=f"Bearer {OTHER_KEY}")
    assert theirs == 1 and mine == everyone - 1  # the downloads are of the run's account
    assert journaled.count({"code": "run_not_found"}, Authorization=f"Bearer {KEY}") == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"mehtod": "GET"}, "unknown query parameter 'mehtod' (did you mean 'method'?); known: "
                            "account, code, key, method, path, run, since, status"),
        ({"method": "P OST"}, "method: 'P OST' is not accepted; expected an HTTP method"),
        ({"code": ""}, "code: "),
        ({"run": ""}, "run: "),
        ({"status": "4XX"}, "status: '4XX' is not accepted"),
    ],
)  # fmt: skip
def test_an_unknown_or_bad_filter_is_400_naming_it_on_both_endpoints(
    journaled: Journaled, query: dict[str, str], message: str
) -> None:
    for path in ("/_mock/requests/count", "/_mock/requests"):
        response = journaled.mock.client.get(path, params=query)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert response.json()["error"]["message"].startswith(message)
    assert journaled.listed({}) == journaled.everything  # a refused call is not journaled


def test_the_count_follows_the_journal_as_it_grows_and_is_cleared(make_mock: MockFactory) -> None:
    mock = make_mock()
    journal = Journaled.__new__(Journaled)
    journal.mock = mock
    assert journal.count({"method": "POST"}) == 0
    run_id = mock.create().json()["id"]
    assert journal.count({"method": "POST"}) == 1
    assert journal.count({"run": run_id}) == 1
    mock.client.delete("/_mock/requests")
    assert journal.count({}) == 0


# --- through the pytest handle -----------------------------------------------------------------


def test_the_handle_counts_and_asserts_by_method_code_and_run() -> None:
    with mock_runbase.serve() as mock:
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        body = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox"}}
        mock.add_rule("rate-limit", times=1, endpoint="get")
        run = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers).json()
        for _ in range(2):
            httpx.get(f"{mock.base_url}/runs/{run['id']}", headers=headers)
        assert mock.count_requests() == 3
        assert mock.count_requests(method="POST", path="/v1/runs") == 1
        assert mock.count_requests(code="RATE_LIMITED") == 1
        assert mock.count_requests(run=run["id"], status=200) == 2
        assert mock.count_requests(status="4xx", method="get") == 1
        mock.assert_requested("GET", f"/runs/{run['id']}", code="RATE_LIMITED")
        mock.assert_requested("GET", f"/runs/{run['id']}", run=run["id"], count=2)
        with pytest.raises(AssertionError) as failure:
            mock.assert_requested("POST", "/v1/runs", code="USAGE_EXCEEDED")
        assert str(failure.value).startswith("expected 1 x POST /v1/runs USAGE_EXCEEDED, found 0")
        assert f"GET /v1/runs/{run['id']} -> 429 RATE_LIMITED" in str(failure.value)
        with pytest.raises(ValueError, match="method: 'no such' is not accepted"):
            mock.count_requests(method="no such")
