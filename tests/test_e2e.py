"""``mock-runbase serve`` as a real process on a free loopback port, used by real clients."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.clients.retry_client import RunbaseClient
from tests.served import Server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server("--clock", "virtual", env={"MOCK_RUNBASE_RATE_LIMIT": "3/10"})
    yield running
    running.stop()


def test_banner_prints_base_urls_and_a_curl() -> None:
    running = Server("--timing", "fast", "--no-rate-limit")
    code, output = running.stop()
    assert code == 0, output
    assert f"{running.base.replace('127.0.0.1', 'localhost')}/v1" in output
    assert "/api/v1" in output
    assert "curl -s" in output and "Authorization: Bearer sk-" in output


def test_lifecycle_over_a_real_socket_with_a_png(server: Server) -> None:
    headers = {"Authorization": "Bearer sk-e2e-lifecycle"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "harbour", "aspect_ratio": "9:16"}}
    created = httpx.post(f"{server.base}/v1/runs", json=body, headers=headers).json()
    assert created["status"] == "pending"
    server.advance(10)
    run = httpx.get(f"{server.base}/api/v1/runs/{created['id']}", headers=headers).json()
    assert run["status"] == "succeeded"
    [url] = run["output"]["urls"]
    assert url.startswith(server.base + "/files/generated/")
    png = httpx.get(url)
    assert Image.open(io.BytesIO(png.content)).size == (864, 1536)


def test_environment_variables_configure_serve(server: Server) -> None:
    headers = {"Authorization": "Bearer sk-e2e-env"}
    statuses = [
        httpx.get(f"{server.base}/v1/runs/run_x", headers=headers).status_code for _ in range(4)
    ]
    assert statuses == [404, 404, 404, 429]  # MOCK_RUNBASE_RATE_LIMIT=3/10


def test_the_model_page_curl_sample_works_against_the_mock(server: Server) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    payload = json.dumps(
        {
            "model": "openai/gpt-image-2",
            "input": {
                "prompt": "A cozy cabin in snowy woods",
                "aspect_ratio": "16:9",
                "resolution": "2K",
            },
        }
    )
    result = subprocess.run(
        [
            curl, "-sS", "-X", "POST", f"{server.base}/v1/runs",
            "-H", "Authorization: Bearer sk-e2e-curl",
            "-H", "Content-Type: application/json",
            "-d", payload,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    created = json.loads(result.stdout)
    assert created["status"] == "pending" and created["costUsd"] == 70_000


def test_the_rate_limit_docs_retry_client_works_unmodified(server: Server) -> None:
    slept: list[float] = []

    def virtual_sleep(seconds: float) -> None:
        slept.append(seconds)
        server.advance(seconds)

    client = RunbaseClient("sk-e2e-retry", base_url=f"{server.base}/api/v1", sleep=virtual_sleep)
    runs = [client.create_run("openai/gpt-image-2", {"prompt": f"tile {i}"}) for i in range(4)]
    assert slept, "the 4th request within 10 s must have met a 429 and backed off"
    finished = [client.wait(run["id"]) for run in runs]
    assert [run["status"] for run in finished] == ["succeeded"] * 4


def test_ctrl_c_stops_cleanly() -> None:
    running = Server("--timing", "instant")
    assert running.healthy_after < 10
    code, output = running.stop()
    assert code == 0
    assert "Traceback" not in output


def test_drop_rule_closes_the_connection_without_an_answer(server: Server) -> None:
    headers = {"Authorization": "Bearer sk-e2e-drop"}
    rule = {"match": {"key": "sk-e2e-drop"}, "effect": {"scenario": "drop"}, "times": 1}
    assert httpx.post(f"{server.base}/_mock/rules", json=rule).status_code == 201
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "x"}}
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{server.base}/v1/runs", json=body, headers=headers)
    account = httpx.get(f"{server.base}/_mock/account", headers=headers).json()
    assert account["runs"] == 0
    assert httpx.post(f"{server.base}/v1/runs", json=body, headers=headers).status_code == 200


def test_latency_rule_delays_the_answer(server: Server) -> None:
    headers = {"Authorization": "Bearer sk-e2e-latency"}
    rule = {"match": {"key": "sk-e2e-latency"}, "effect": {"scenario": "latency", "ms": 400}}
    assert httpx.post(f"{server.base}/_mock/rules", json=rule).status_code == 201
    started = time.monotonic()
    response = httpx.get(f"{server.base}/v1/runs/run_x", headers=headers)
    assert response.status_code == 404
    assert time.monotonic() - started >= 0.4
