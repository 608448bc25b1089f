"""The validating proxy judges real clients: the rate-limit docs' retry client and the model
page's curl sample pass through it clean; a careless client and a server that breaks the spec
are caught; a recorded lifecycle replays offline through ``serve --replay``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from mock_runbase.cassette import Cassette
from mock_runbase.proxy import REPORT_PATH, Proxy
from mock_runbase.ratelimit import parse_rate_limit
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec
from mock_runbase.testing import MockServer
from tests.clients.retry_client import RunbaseClient
from tests.served import Server, free_port, serve_command
from tests.test_contracts_broken import lower_case_rate_limited

GPT = load_spec().catalog.models["openai/gpt-image-2"]
RESOLUTIONS = GPT.input_schema["properties"]["resolution"]["enum"]


class Served:
    """Any ASGI app on a free loopback port, in a daemon thread, for a ``with`` block."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.005)  # waiting for a thread to bind its port, not for mock time
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def upstream() -> Iterator[MockServer]:
    server = MockServer(MockSettings(timing="instant", clock="virtual", rate_limit=None)).start()
    yield server
    server.stop()


def report(proxy_url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(proxy_url + REPORT_PATH).json()
    return body


MODEL_PAGE_CURL = r"""
# The model page's cURL sample (openai/gpt-image-2, /api tab); only the base URL is a variable.
set -euo pipefail
BASE="${RUNBASE_BASE_URL:-https://api.runbase.net/v1}"
RUN=$(curl -s -X POST "$BASE/runs" \
  -H "Authorization: Bearer $RUNBASE_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "openai/gpt-image-2",
       "input": {"prompt": "A cozy cabin in snowy woods",
                 "aspect_ratio": "16:9", "resolution": "2K"}}')
ID=$(printf '%s' "$RUN" | sed -E 's/.*"id":"([^"]+)".*/\1/')
curl -s "$BASE/runs/$ID" -H "Authorization: Bearer $RUNBASE_API_KEY"
"""


def test_the_model_page_curl_sample_is_clean(upstream: MockServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = tmp_path / "model_page.sh"
    script.write_text(MODEL_PAGE_CURL)
    with Served(Proxy(upstream.origin)) as proxy:
        env = {**os.environ, "RUNBASE_BASE_URL": f"{proxy}/v1", "RUNBASE_API_KEY": "sk-curl-demo"}
        result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "succeeded"
        seen = report(proxy)
    assert seen["exchanges"] == 2 and seen["judged"] == 2
    assert seen["violations"] == 0, seen["recent"]


def test_the_rate_limit_docs_retry_client_is_clean() -> None:
    settings = MockSettings(timing="fast", clock="real", rate_limit=parse_rate_limit("4/1"))
    server = MockServer(settings).start()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)  # the client's own back-off, in real time: the proxy measures it

    try:
        with Served(Proxy(server.origin)) as proxy:
            client = RunbaseClient(
                "sk-retry-demo", base_url=f"{proxy}/api/v1", poll_interval=0.1, sleep=sleep
            )
            runs = [client.create_run(GPT.id, {"prompt": f"tile {i}"}) for i in range(5)]
            assert [client.wait(run["id"])["status"] for run in runs] == ["succeeded"] * 5
            seen = report(proxy)
    finally:
        server.stop()
    assert 1 in slept, "the 5th request within 1 s must have met a 429 and backed off"
    assert seen["violations"] == 0, seen["recent"]
    assert seen["judged"] == seen["exchanges"] >= 11


class CarelessClient:
    """A client written in a hurry: spells the resolution ``4k`` and retries a 429 at once."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def create(self, prompt: str, resolution: str = "4k", retries: int = 3) -> httpx.Response:
        body = {"model": GPT.id, "input": {"prompt": prompt, "aspect_ratio": "16:9"}}
        body["input"]["resolution"] = resolution
        for _ in range(retries):
            response = httpx.post(f"{self.base_url}/runs", json=body, headers=self.headers)
            if response.status_code != 429:
                break
        return response


def test_a_careless_client_is_caught_in_both_of_its_faults() -> None:
    settings = MockSettings(timing="instant", clock="virtual", rate_limit=parse_rate_limit("2/10"))
    server = MockServer(settings).start()
    try:
        with Served(Proxy(server.origin)) as proxy:
            client = CarelessClient(f"{proxy}/v1", "sk-careless")
            assert client.create("a fox").status_code == 400  # "4k" is not one of 1K, 2K, 4K
            statuses = [client.create("a fox", resolution=RESOLUTIONS[0]).status_code for _ in "ab"]
            seen = report(proxy)
    finally:
        server.stop()
    assert statuses == [200, 429]  # 2 requests per 10 s: the third and its retries are 429s
    rules = seen["byRule"]
    assert rules.get("request-body", 0) >= 1, seen
    assert rules.get("client-ignored-429", 0) >= 1, seen
    assert seen["byDirection"].get("response", 0) == 0, seen  # the mock answered to the spec
    first = next(v for e in seen["recent"] for v in e["violations"] if v["rule"] == "request-body")
    assert "input.resolution" in first["message"] and "4k" in first["message"]


def test_a_server_that_breaks_the_spec_is_caught() -> None:
    with Served(lower_case_rate_limited()) as broken, Served(Proxy(broken)) as proxy:
        headers = {"Authorization": "Bearer sk-server-check"}
        rule = {"effect": {"scenario": "rate-limit"}, "times": 1}
        assert httpx.post(f"{proxy}/_mock/rules", json=rule, headers=headers).status_code == 201
        response = httpx.get(f"{proxy}/v1/runs/run_unknown1", headers=headers)
        assert response.status_code == 429
        seen = report(proxy)
    assert seen["byDirection"] == {"response": 1}, seen
    [entry] = seen["recent"]
    assert entry["violations"][0]["rule"] == "response-body"
    assert "RATE_LIMITED" in entry["violations"][0]["message"]
    assert seen["exchanges"] == 2 and seen["judged"] == 1  # /_mock is the mock's own: not judged


class ProxyProcess:
    """``mock-runbase proxy --strict`` as a process in front of ``upstream``."""

    def __init__(self, upstream: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [*serve_command(), "proxy", "--upstream", upstream, "--port", str(port), "--strict",
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for _ in range(400):
            try:
                report(self.url)
                return
            except httpx.TransportError:
                time.sleep(0.02)  # waiting for a process to bind its port
        self.stop(signal.SIGKILL)
        raise TimeoutError("the proxy did not start")

    def stop(self, sent: signal.Signals) -> tuple[int, str]:
        """Send ``sent``; the exit code and everything the proxy printed."""
        self.process.send_signal(sent)
        output, _ = self.process.communicate(timeout=10)
        return self.process.returncode, output


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_strict_mode_reports_and_exits_1_when_stopped_by_either_signal(
    upstream: MockServer, sent: signal.Signals
) -> None:
    proxy = ProxyProcess(upstream.origin)
    try:
        body = {"model": GPT.id, "input": {"prompt": "x", "resolution": "8K"}}
        response = httpx.post(
            f"{proxy.url}/v1/runs", json=body, headers={"Authorization": "Bearer k"}
        )
        assert response.status_code == 401  # a key without sk- is not one; the mock says so too
        assert report(proxy.url)["byRule"] == {"request-auth": 1, "request-body": 1}
    finally:
        code, output = proxy.stop(sent)
    assert code == 1, output
    assert "VIOLATION (request) request-body" in output
    assert "1 exchanges (1 judged against the spec), 2 violations" in output


def test_a_clean_strict_session_stopped_by_sigterm_exits_0_with_its_summary(
    upstream: MockServer,
) -> None:
    proxy = ProxyProcess(upstream.origin)
    try:
        response = httpx.get(
            f"{proxy.url}/v1/runs/run_none", headers={"Authorization": "Bearer sk-x"}
        )
        assert response.status_code == 404
    finally:
        code, output = proxy.stop(signal.SIGTERM)
    assert code == 0, output
    assert "1 exchanges (1 judged against the spec), 0 violations, 0 upstream errors" in output


@pytest.fixture
def fast_upstream() -> Iterator[MockServer]:
    server = MockServer(MockSettings(timing="fast", clock="virtual", rate_limit=None)).start()
    yield server
    server.stop()


def test_record_then_replay_a_lifecycle_offline(fast_upstream: MockServer, tmp_path: Path) -> None:
    cassette = tmp_path / "lifecycle.jsonl"
    key = "sk-record-secret-4321"
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": GPT.id, "input": {"prompt": "a lighthouse", "aspect_ratio": "16:9"}}
    with Served(Proxy(fast_upstream.origin, record=cassette)) as proxy:
        created = httpx.post(f"{proxy}/v1/runs", json=body, headers=headers).json()
        recorded = [created["status"]]
        for seconds in (0, 0.02, 5, 0):
            httpx.post(f"{proxy}/_mock/clock/advance", json={"seconds": seconds})
            run = httpx.get(f"{proxy}/v1/runs/{created['id']}", headers=headers).json()
            recorded.append(run["status"])
        [url] = run["output"]["urls"]
        assert url.startswith(proxy), "output URLs are rewritten to go through the proxy"
        png = httpx.get(url).content
    assert recorded == ["pending", "pending", "processing", "succeeded", "succeeded"]
    text = cassette.read_text()
    assert key not in text and "****4321" in text
    assert len(Cassette.load(cassette).exchanges) == 10  # create, 4 x (advance, poll), image

    replay = Server("--replay", str(cassette), "--clock", "virtual", "--log-level", "warning")
    try:
        other = {"Authorization": "Bearer sk-ci-offline"}
        again = httpx.post(f"{replay.base}/api/v1/runs", json=body, headers=other)
        assert again.headers.get("x-mock-replayed") == "1"
        assert again.json() == created
        polls = [httpx.get(f"{replay.base}/v1/runs/{created['id']}", headers=other) for _ in "abcd"]
        assert [p.json()["status"] for p in polls] == [
            "pending",
            "processing",
            "succeeded",
            "succeeded",
        ]
        [replayed_url] = polls[-1].json()["output"]["urls"]
        assert replayed_url.startswith(replay.base)
        image = httpx.get(replayed_url)
        assert image.content == png
        assert Image.open(io.BytesIO(image.content)).size == GPT.output_size(
            GPT.with_defaults(body["input"])
        )
        fresh = httpx.post(f"{replay.base}/v1/runs", json={**body, "input": {"prompt": "new"}},
                           headers=other)  # fmt: skip
        assert fresh.status_code == 200 and "x-mock-replayed" not in fresh.headers
        assert fresh.json()["id"] != created["id"]  # not in the cassette: the mock answers
    finally:
        replay.stop()


def test_an_unreachable_upstream_is_a_502_with_the_error_body() -> None:
    with Served(Proxy(f"http://127.0.0.1:{free_port()}")) as proxy:
        response = httpx.get(f"{proxy}/v1/runs/run_x", headers={"Authorization": "Bearer sk-x"})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"
        assert report(proxy)["upstreamErrors"] == 1


def test_a_cassette_line_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cassette": "mock-runbase", "version": 1, "upstream": ""}\n{"seq": 1}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        Cassette.load(bad)
    result = subprocess.run(
        [sys.executable, "-m", "mock_runbase", "serve", "--replay", str(bad), "--port", "1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not a cassette line" in result.stderr


def test_record_then_replay_a_video_run(fast_upstream: MockServer, tmp_path: Path) -> None:
    cassette = tmp_path / "video.jsonl"
    headers = {"Authorization": "Bearer sk-record-video"}
    body = {"model": "bytedance/seedance-1-lite",
            "input": {"prompt": "a video", "resolution": "480p", "duration": "5"}}  # fmt: skip
    with Served(Proxy(fast_upstream.origin, record=cassette)) as proxy:
        created = httpx.post(f"{proxy}/v1/runs", json=body, headers=headers).json()
        httpx.post(f"{proxy}/_mock/clock/advance", json={"seconds": 5})
        run = httpx.get(f"{proxy}/v1/runs/{created['id']}", headers=headers).json()
        [url] = run["output"]["urls"]
        assert url.startswith(proxy) and url.endswith(".mp4")
        video = httpx.get(url)
        assert video.headers["content-type"] == "video/mp4"
        part = httpx.get(url, headers={"Range": "bytes=0-99"})
        assert (part.status_code, part.content) == (206, video.content[:100])
    replay = Server("--replay", str(cassette), "--clock", "virtual", "--log-level", "warning")
    try:
        other = {"Authorization": "Bearer sk-ci-offline"}
        assert httpx.post(f"{replay.base}/v1/runs", json=body, headers=other).json() == created
        polled = httpx.get(f"{replay.base}/v1/runs/{created['id']}", headers=other).json()
        [replayed_url] = polled["output"]["urls"]
        replayed = httpx.get(replayed_url)
        assert replayed.headers["content-type"] == "video/mp4"
        assert replayed.content == video.content
    finally:
        replay.stop()
