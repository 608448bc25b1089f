"""The dashboard's page and data endpoints (``/_mock/ui``)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image

from mock_runbase.clock import parse_timestamp
from tests.conftest import KEY, OTHER_KEY, ROOT, Mock, MockFactory
from tests.test_app import error_of

TOKEN = {"X-Mock-Admin-Token": "s3cret"}


def state(mock: Mock, **params: Any) -> dict[str, Any]:
    response = mock.client.get("/_mock/ui/state", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def only_run(mock: Mock) -> dict[str, Any]:
    [run] = state(mock)["runs"]
    return run


def ms(timestamp: str) -> int:
    return parse_timestamp(timestamp)


# --- the page -------------------------------------------------------------------------------


def test_page_is_one_self_contained_html_document(mock: Mock) -> None:
    response = mock.client.get("/_mock/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<style>" in page and "<script>" in page  # our CSS and script, inlined
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet", page)
    assert not re.search(r"(src|href)=\"https?:", page)  # nothing from a CDN
    assert "/_mock/ui/state" in page and "X-Mock-Admin-Token" in page


def test_empty_mock(mock: Mock) -> None:
    body = state(mock)
    assert body == {
        "clock": {"now": body["clock"]["now"], "virtual": True},
        "runs": [],
        "accounts": [],
        "requests": [],
        "requestsMatched": 0,
        "rules": [],
    }


# --- runs -----------------------------------------------------------------------------------


def test_a_run_shows_its_timeline_then_its_thumbnail(mock: Mock) -> None:
    created = mock.create(aspect_ratio="16:9", resolution="1K").json()
    run = only_run(mock)
    assert run["status"] == "pending"
    assert (run["processingAt"], run["completedAt"], run["thumbnail"]) == (None, None, None)
    assert run["createdAt"] == created["createdAt"]
    assert (run["aspectRatio"], run["resolution"], run["costUsd"]) == (
        "16:9",
        "1K",
        created["costUsd"],
    )
    assert (run["keyLast4"], run["prompt"], run["scenario"]) == (
        KEY[-4:],
        "a lighthouse at dawn",
        "succeed",
    )

    mock.advance(1)
    run = only_run(mock)
    assert run["status"] == "processing"
    assert ms(run["createdAt"]) < ms(run["processingAt"]) <= ms(run["createdAt"]) + 1000
    assert run["completedAt"] is None

    mock.advance(60)
    run = only_run(mock)
    polled = mock.get(created["id"]).json()
    assert run["status"] == polled["status"] == "succeeded"
    assert run["completedAt"] == polled["completedAt"]
    assert polled["output"]["urls"][0].endswith(run["output"])
    assert ms(run["processingAt"]) < ms(run["completedAt"])
    assert (run["error"], run["refunded"]) == (None, False)

    thumbnail = mock.client.get(run["thumbnail"])
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(thumbnail.content))
    assert image.width <= 320 and image.height <= 180
    assert abs(image.width / image.height - run["width"] / run["height"]) < 0.02


def test_a_failed_run_shows_its_error_and_its_refund(mock: Mock) -> None:
    start = mock.balance()
    mock.create(scenario="fail")
    account = state(mock)["accounts"][0]
    assert account["balanceUsd"] < start
    mock.advance(60)
    body = state(mock)
    [run] = body["runs"]
    assert run["status"] == "failed"
    assert run["error"]["code"] == "generation_failed"
    assert (run["refunded"], run["thumbnail"], run["output"]) == (True, None, None)
    assert run["completedAt"] is not None
    [account] = body["accounts"]
    assert account["balanceUsd"] == start
    assert account["spentUsd"] == 0


def test_runs_are_newest_first_with_a_prompt_excerpt_and_a_limit(mock: Mock) -> None:
    mock.create(prompt="first")
    mock.create(prompt="x" * 500, key=OTHER_KEY)
    runs = state(mock)["runs"]
    assert [r["keyLast4"] for r in runs] == [OTHER_KEY[-4:], KEY[-4:]]
    assert runs[0]["prompt"] == "x" * 120 + "\u2026"
    assert [r["prompt"] for r in state(mock, limit=1)["runs"]] == [runs[0]["prompt"]]


def test_thumbnail_of_an_unfinished_or_unknown_run_is_404(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    for path in (f"/_mock/ui/runs/{run_id}/thumbnail", "/_mock/ui/runs/run_nope/thumbnail"):
        assert error_of(mock.client.get(path)) == (404, "run_not_found")


# --- accounts, rules, journal ---------------------------------------------------------------


def test_accounts_show_spend_against_the_keys_limit_and_quota(mock: Mock) -> None:
    name = mock.account()["account"]
    keys = [{"key": KEY, "spendLimitCents": 50, "usageQuota": 3}]
    assert mock.client.put(f"/_mock/accounts/{name}", json={"keys": keys}).status_code == 200
    cost = mock.create().json()["costUsd"]
    [account] = state(mock)["accounts"]
    [key] = account["keys"]
    assert (account["account"], account["spentUsd"], account["runs"]) == (name, cost, 1)
    assert (key["last4"], key["spentUsd"], key["spendLimitCents"]) == (KEY[-4:], cost, 50)
    assert (key["usageUsed"], key["usageQuota"]) == (1, 3)


def test_rules_show_their_hit_counts(mock: Mock) -> None:
    rule = {"match": {"endpoint": "create"}, "effect": {"scenario": "fail"}, "times": 1}
    assert mock.client.post("/_mock/rules", json=rule).status_code == 201
    mock.create()
    mock.create()
    [shown] = state(mock)["rules"]
    assert (shown["matches"], shown["hits"], shown["exhausted"]) == (2, 1, True)


def test_journal_is_newest_first_without_headers_or_bodies_and_filters(mock: Mock) -> None:
    mock.create()
    mock.create(key=OTHER_KEY)
    mock.get("run_missing")
    mock.client.post("/v1/runs", content=b"{", headers={"Authorization": f"Bearer {KEY}"})
    body = state(mock)
    assert [(r["method"], r["status"]) for r in body["requests"]] == [
        ("POST", 400),
        ("GET", 404),
        ("POST", 200),
        ("POST", 200),
    ]
    assert body["requestsMatched"] == 4
    assert "headers" not in body["requests"][0] and "body" not in body["requests"][0]
    assert body["requests"][1]["errorCode"] == "run_not_found"

    def statuses(**params: Any) -> list[int]:
        return [r["status"] for r in state(mock, **params)["requests"]]

    assert statuses(status="errors") == [400, 404]
    assert statuses(status="4xx") == [400, 404]
    assert statuses(status="404") == [404]
    assert statuses(status="2xx") == [200, 200]
    assert statuses(status="dropped") == []
    assert statuses(key=OTHER_KEY[-4:]) == [200]
    assert statuses(key=KEY, status="2xx") == [200]
    limited = state(mock, limit=1)
    assert (len(limited["requests"]), limited["requestsMatched"]) == (1, 4)


def test_polling_the_dashboard_changes_nothing(mock: Mock) -> None:
    mock.create()
    mock.advance(60)
    first = state(mock)
    run = first["runs"][0]
    assert mock.client.get(run["thumbnail"]).status_code == 200
    assert mock.client.get("/_mock/ui").status_code == 200
    assert state(mock) == first  # none of the dashboard's calls is journaled or charged


@pytest.mark.parametrize(
    "params",
    [{"status": "teapot"}, {"status": "6xx"}, {"limit": "-1"}, {"limit": "1001"}, {"limit": "x"}],
)
def test_bad_query_is_400(mock: Mock, params: dict[str, str]) -> None:
    response = mock.client.get("/_mock/ui/state", params=params)
    assert error_of(response) == (400, "invalid_request")


# --- admin token ----------------------------------------------------------------------------


def test_admin_token_guards_the_dashboard_and_its_data(make_mock: MockFactory) -> None:
    mock = make_mock(admin_token="s3cret")
    mock.create()
    mock.advance(60)
    thumbnail = state_with(mock, TOKEN)["runs"][0]["thumbnail"]
    for path in ("/_mock/ui", "/_mock/ui/state", thumbnail):
        assert error_of(mock.client.get(path)) == (401, "admin_token_required")
        assert mock.client.get(path, headers=TOKEN).status_code == 200


def state_with(mock: Mock, headers: dict[str, str]) -> dict[str, Any]:
    response = mock.client.get("/_mock/ui/state", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_browser_opens_the_page_with_the_token_in_its_url(make_mock: MockFactory) -> None:
    mock = make_mock(admin_token="s3cret")
    assert mock.client.get("/_mock/ui", params={"token": "s3cret"}).status_code == 200
    assert mock.client.get("/_mock/ui", params={"token": "wrong"}).status_code == 401
    assert mock.client.get("/_mock/rules", params={"token": "s3cret"}).status_code == 401


def test_every_status_the_dashboard_offers_filters_the_journal_api_alike(mock: Mock) -> None:
    page = (ROOT / "mock_runbase" / "static" / "dashboard.html").read_text()
    start = page.index('<select id="filter-status">')
    select = page[start : page.index("</select>", start)]
    offered = [value for value in re.findall(r'<option value="([^"]*)"', select) if value]
    assert offered == ["errors", "2xx", "4xx", "5xx", "dropped"]
    mock.create()
    mock.get("run_missing")
    for status in offered:
        journal = mock.client.get("/_mock/requests", params={"status": status})
        assert journal.status_code == 200, journal.text
        shown = [r["seq"] for r in state(mock, status=status)["requests"]]
        assert shown == [e["seq"] for e in reversed(journal.json()["requests"])], status
