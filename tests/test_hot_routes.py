"""The hot routes (``mock_runbase.hot_routes``) answer exactly as Starlette's full stack would.

Two mocks with the same settings, on clocks moved alike: one as built, one whose hot routes
never match (so every request takes Starlette's router and middleware). Any sequence of
requests, hot or not, gets the same statuses, headers, bodies and journal entries from both,
once the random run ids and file names are put in order of appearance.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mock_runbase.hot_routes import HotRoutes
from mock_runbase.journal import JournalMiddleware
from tests.conftest import GPT, KEY, OTHER_KEY, Mock, MockFactory

RANDOM_NAMES = re.compile(r"run_[A-Za-z0-9]{22}|/files/generated/[A-Za-z0-9]+\.png")
VALID = {"model": GPT, "input": {"prompt": "a lighthouse", "resolution": "1K"}}


def hot_routes(mock: Mock) -> HotRoutes:
    entry = mock.client.app.entry  # type: ignore[attr-defined]
    assert isinstance(entry, JournalMiddleware) and isinstance(entry.app, HotRoutes)
    return entry.app


def without_hot_routes(mock: Mock) -> Mock:
    hot_routes(mock).endpoint = lambda scope: None  # type: ignore[method-assign]
    return mock


class Normalizer:
    """Each distinct run id or file name, in order of appearance, becomes ``#0``, ``#1``..."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        return RANDOM_NAMES.sub(lambda m: self.seen.setdefault(m[0], f"#{len(self.seen)}"), text)


PREFIXES = st.sampled_from(["/v1", "/api/v1"])
PATHS = st.sampled_from(
    ["runs", "runs/", "runs/{id}", "runs/{id}/", "runs/{id}/x", "runs/run_missing", "runs//"]
)
METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"])
AUTHS = st.sampled_from([f"Bearer {KEY}", f"Bearer {OTHER_KEY}", None, "Basic abc", "Bearer "])
BODIES = st.sampled_from([VALID, {"model": GPT, "input": {}}, b"{not json", None])
SCENARIOS = st.sampled_from(
    [
        *[None, None, "error-500", "rate-limit", "drop", "latency; ms=0", "fail", "fial"],
        *["latency;ms=x", "reset", "garbage", "truncated", "malformed-chunk", "cdn-lag"],
        # runs timed by polls: each answered poll, on either path, counts alike
        *["fail; pending_polls=1; processing_polls=1", "stuck; pending_polls=2"],
        *["succeed; processing_polls=2", "succeed; pending_polls=x"],
    ]
)
REQUESTS = st.fixed_dictionaries(
    {
        "method": METHODS,
        "prefix": PREFIXES,
        "path": PATHS,
        "run": st.integers(0, 3),
        "auth": AUTHS,
        "body": BODIES,
        "scenario": SCENARIOS,
        "root_path": st.sampled_from(["", "", "", "/base"]),
        "advance": st.sampled_from([0, 0, 1, 30]),
    }
)


class Side:
    """One of the two mocks, with the ids of the runs it created and its normalizer."""

    def __init__(self, mock: Mock) -> None:
        self.mock = mock
        self.runs: list[str] = []
        self.normalize = Normalizer()

    def send(self, request: dict[str, Any]) -> tuple[int, dict[str, str], str] | str:
        run_id = self.runs[request["run"] % len(self.runs)] if self.runs else "run_none"
        path = f"{request['prefix']}/{request['path'].format(id=run_id)}"
        headers = {"Authorization": request["auth"]} if request["auth"] is not None else {}
        if request["scenario"] is not None:
            headers["X-Mock-Scenario"] = request["scenario"]
        body = request["body"]
        client = self.client(request["root_path"])
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        if body is None or request["method"] in ("GET", "HEAD", "DELETE"):
            kwargs = {}
        try:
            response = client.request(
                request["method"], request["root_path"] + path, headers=headers, **kwargs
            )
        except ConnectionResetError:
            return "dropped"
        if response.status_code == 200 and request["method"] == "POST":
            self.runs.append(response.json()["id"])
        kept = {
            name: self.normalize(value)
            for name, value in response.headers.items()
            if name not in ("date", "x-mock-worker")
        }
        return response.status_code, kept, self.normalize(response.text)

    def client(self, root_path: str) -> TestClient:
        if not root_path:
            return self.mock.client
        return TestClient(self.mock.client.app, base_url="http://mock.test", root_path=root_path)

    def journal(self) -> list[dict[str, Any]]:
        entries = self.mock.client.get("/_mock/requests").json()["requests"]
        for entry in entries:
            entry.pop("durationMs", None)
            entry.pop("wallAt", None)  # the machine's time: the two sides run one after the other
        return [dict(sorted(entry.items())) for entry in entries]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # new mocks each example
@given(st.lists(REQUESTS, min_size=1, max_size=12))
def test_any_requests_get_the_same_answers_as_from_starlettes_stack(
    make_mock: MockFactory, requests: list[dict[str, Any]]
) -> None:
    hot = Side(make_mock())
    full = Side(without_hot_routes(make_mock()))
    for request in requests:
        assert hot.send(request) == full.send(request), request
        hot.mock.advance(request["advance"])
        full.mock.advance(request["advance"])
    assert hot.normalize(repr(hot.journal())) == full.normalize(repr(full.journal()))


def test_the_hot_routes_take_only_exact_matches(mock: Mock) -> None:
    routes = hot_routes(mock)

    def taken(method: str, path: str, root_path: str = "") -> bool:
        scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
        return routes.endpoint(scope) is not None

    assert taken("POST", "/v1/runs") and taken("POST", "/api/v1/runs")
    assert taken("GET", "/v1/runs/run_1") and taken("GET", "/api/v1/runs/run_1")
    assert not taken("POST", "/v1/runs/") and not taken("POST", "/v2/runs")
    assert not taken("GET", "/v1/runs/") and not taken("GET", "/v1/runs/a/b")
    assert not taken("HEAD", "/v1/runs/run_1") and not taken("PUT", "/v1/runs/run_1")
    assert not taken("GET", "/v1/runs") and not taken("POST", "/v1/runs", root_path="/base")


def test_an_unexpected_error_is_a_500_and_reaches_the_server(
    mock: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = mock.create().json()["id"]
    service = mock.client.app.service  # type: ignore[attr-defined]

    async def broken(*args: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(service, "get_run", broken)
    with pytest.raises(ValueError, match="a bug"):  # as Starlette's ServerErrorMiddleware does
        mock.get(run_id)

    quiet = TestClient(mock.client.app, base_url="http://mock.test", raise_server_exceptions=False)
    answer = quiet.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {"message": "Internal server error", "code": "internal_error"}
    }
    last = mock.client.get("/_mock/requests").json()["requests"][-1]
    assert (last["status"], last["errorCode"], last["path"]) == (
        500,
        "internal_error",
        f"/v1/runs/{run_id}",
    )
