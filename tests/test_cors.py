"""``--cors``: a browser front-end may call the mock from the origins given (off by default:
Runbase's own CORS behaviour is undocumented)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GPT, KEY, MockFactory
from tests.served import Server

APP_ORIGIN = "http://localhost:3000"
PREFLIGHT = {
    "Origin": APP_ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-mock-scenario",
}
BODY = {"model": GPT, "input": {"prompt": "a lighthouse"}}


def test_without_cors_a_browser_gets_no_cors_headers(make_mock: MockFactory) -> None:
    mock = make_mock()
    preflight = mock.client.options("/v1/runs", headers=PREFLIGHT)
    assert preflight.status_code == 405
    created = mock.client.post(
        "/v1/runs", json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": APP_ORIGIN}
    )
    assert created.status_code == 200
    assert "access-control-allow-origin" not in created.headers


def test_a_listed_origin_gets_preflights_and_readable_headers(make_mock: MockFactory) -> None:
    mock = make_mock(cors=(APP_ORIGIN, "https://app.example"))
    preflight = mock.client.options("/v1/runs", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-mock-scenario"} <= set(allowed.split(", "))

    headers = {"Authorization": f"Bearer {KEY}", "Origin": APP_ORIGIN}
    for _ in range(2):
        mock.client.post("/v1/runs", json=BODY, headers=headers)
    limited = mock.client.post(
        "/v1/runs", json=BODY, headers={**headers, "X-Mock-Scenario": "rate-limit"}
    )
    assert limited.status_code == 429
    assert limited.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "Retry-After" in limited.headers["access-control-expose-headers"]

    journal = mock.client.get("/_mock/requests").json()["requests"]
    assert [entry["method"] for entry in journal] == ["POST"] * 3  # preflights not journaled


def test_another_origin_is_refused(make_mock: MockFactory) -> None:
    mock = make_mock(cors=(APP_ORIGIN,))
    preflight = mock.client.options(
        "/v1/runs", headers={**PREFLIGHT, "Origin": "http://evil.example"}
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    "path", ["/v1/runs", "/api/v1/runs", "/_mock/rules", "/files/generated/x.png"]
)
def test_star_allows_every_origin_on_every_path(make_mock: MockFactory, path: str) -> None:
    mock = make_mock(cors=("*",))
    preflight = mock.client.options(
        path, headers={**PREFLIGHT, "Origin": "http://anywhere.example"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_cors_over_a_real_socket() -> None:
    server = Server("--cors", f"{APP_ORIGIN},https://app.example", "--log-level", "warning")
    try:
        preflight = httpx.options(f"{server.base}/v1/runs", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        polled = httpx.get(
            f"{server.base}/v1/runs/run_nope",
            headers={"Authorization": f"Bearer {KEY}", "Origin": "https://app.example"},
        )
        assert polled.status_code == 404
        assert polled.headers["access-control-allow-origin"] == "https://app.example"
    finally:
        server.stop()
