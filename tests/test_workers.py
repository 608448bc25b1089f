"""Several worker processes on one Redis act as one mock: ``serve --workers 4 --store
redis://`` as a subprocess, hammered by concurrent clients, then with a worker killed and
with Redis restarted. Every answer names its process in ``X-Mock-Worker``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.redis_server import RedisServer
from tests.served import Server, serve_command

WORKERS = 4
CLIENTS = 200
GPT = "openai/gpt-image-2"
BODY = {"model": GPT, "input": {"prompt": "a lighthouse at dawn"}}
LOAD_TIMEOUT_S = 60
# One request per connection, so the kernel spreads them over the workers.
FRESH_CONNECTIONS = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
PATIENT = httpx.Timeout(30)  # 200 clients on 2 cores: seconds, not milliseconds, per answer


def start_workers(*args: str, workers: int = WORKERS) -> Server:
    """``serve --workers N`` once every worker answers (the first healthy one is not enough:
    the kernel hands connections to whichever worker is listening)."""
    # warning: no line per request from 4 busy workers in the server's log file
    server = Server("--workers", str(workers), "--log-level", "warning", *args)
    answered: set[str] = set()
    for _ in range(500):
        with httpx.Client(
            base_url=server.base, limits=FRESH_CONNECTIONS, timeout=PATIENT
        ) as client:
            answered.add(client.get("/healthz").headers["x-mock-worker"])
        if len(answered) == workers:
            return server
        time.sleep(0.01)  # waiting for processes to start, not for mock time
    server.stop()
    raise TimeoutError(f"only workers {answered} answered")


def headers(key: str, scenario: str | None = None) -> dict[str, str]:
    sent = {"Authorization": f"Bearer {key}"}
    if scenario:
        sent["X-Mock-Scenario"] = scenario
    return sent


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """4 workers, real clock, fast runs; one declared account with 200 keys for the races."""
    redis_server.flush()
    config = tmp_path_factory.mktemp("cluster") / "mock.yaml"
    keys = [f"sk-shared-{index:03d}" for index in range(CLIENTS)]
    config.write_text(yaml.safe_dump({"accounts": {"shared": {"balance_usd": 3.0, "keys": keys}}}))
    server = start_workers(
        "--store", redis_server.url,
        "--timing", "fast",
        "--rate-limit", "1000/1",
        "--config", str(config),
    )  # fmt: skip
    yield server
    server.stop()


async def create_and_poll(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """Create a run, poll it to its end; the workers that answered each step."""
    created = await client.post("/v1/runs", json=BODY, headers=headers(key))
    assert created.status_code == 200, created.text
    run_id = created.json()["id"]
    pollers = set()
    for _ in range(100):
        polled = await client.get(f"/v1/runs/{run_id}", headers=headers(key))
        assert polled.status_code == 200, polled.text  # created on one worker, seen on all
        pollers.add(polled.headers["x-mock-worker"])
        if polled.json()["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.02)  # a real-clock server: runs take ~50 ms
    return {
        "id": run_id,
        "key": key,
        "creator": created.headers["x-mock-worker"],
        "pollers": pollers,
    }


async def seen_by_every_worker(client: httpx.AsyncClient, run: dict[str, Any]) -> set[str]:
    """Poll the run in small concurrent batches (which spread over the workers best) until
    each worker has answered it."""
    answered: set[str] = set()

    async def poll() -> str:
        polled = await client.get(f"/v1/runs/{run['id']}", headers=headers(run["key"]))
        assert polled.status_code == 200, polled.text
        return polled.headers["x-mock-worker"]

    # the kernel, not the mock, picks the worker of each new connection, and may pass one
    # over for a while: enough batches that it reaches every worker (the loop ends once it has)
    for _ in range(200):
        answered.update(await asyncio.gather(*(poll() for _ in range(WORKERS))))
        if len(answered) == WORKERS:
            break
    return answered


def test_every_run_is_visible_from_every_worker(cluster: Server) -> None:
    async def load() -> None:
        async with httpx.AsyncClient(
            base_url=cluster.base, limits=FRESH_CONNECTIONS, timeout=PATIENT
        ) as client:
            runs = await asyncio.wait_for(
                asyncio.gather(*(create_and_poll(client, f"sk-load-{i}") for i in range(CLIENTS))),
                LOAD_TIMEOUT_S,
            )
            creators = Counter(run["creator"] for run in runs)
            assert len(creators) == WORKERS, creators  # the load did reach every worker
            sample = runs[:: CLIENTS // 20]
            answered = await asyncio.gather(*(seen_by_every_worker(client, r) for r in sample))
            assert all(len(workers) == WORKERS for workers in answered), answered

    asyncio.run(load())


def test_the_balance_identity_holds_exactly_under_concurrent_creates(cluster: Server) -> None:
    async def one_client(client: httpx.AsyncClient, index: int) -> list[dict[str, Any]]:
        key = f"sk-shared-{index:03d}"
        answers = []
        for attempt in range(2):
            scenario = "fail" if (index + attempt) % 3 == 0 else None
            response = await client.post("/v1/runs", json=BODY, headers=headers(key, scenario))
            answers.append({**response.json(), "http": response.status_code})
        return answers

    async def race() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(
            base_url=cluster.base, limits=FRESH_CONNECTIONS, timeout=PATIENT
        ) as client:
            per_client = await asyncio.wait_for(
                asyncio.gather(*(one_client(client, i) for i in range(CLIENTS))), LOAD_TIMEOUT_S
            )
        return [answer for answers in per_client for answer in answers]

    answers = asyncio.run(race())
    created = [a for a in answers if a["http"] == 200]
    refused = Counter(a["http"] for a in answers if a["http"] != 200)
    assert set(refused) == {402}, refused  # the balance ran out, and nothing else went wrong
    cost = created[0]["costUsd"]
    assert len(created) >= 3_000_000 // cost  # failures refund, so more than the balance's worth

    key = headers("sk-shared-000")
    final = {}
    for run in created:  # wait for every run to end (fast timing: ~50 ms)
        for _ in range(200):
            body = httpx.get(f"{cluster.base}/v1/runs/{run['id']}", headers=key).json()
            if body["status"] in ("succeeded", "failed"):
                break
        final[run["id"]] = body["status"]
    kept = sum(cost for status in final.values() if status == "succeeded")
    account = httpx.get(f"{cluster.base}/_mock/accounts/shared").json()
    assert account["startingBalanceUsd"] == 3_000_000
    assert account["balanceUsd"] == 3_000_000 - kept >= 0
    assert account["runs"] == len(created)


def test_the_rate_limit_of_a_key_holds_once_across_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = start_workers("--store", redis_server.url, "--rate-limit", "20/600")
    try:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=server.base, limits=FRESH_CONNECTIONS, timeout=PATIENT
            ) as client:
                return await asyncio.gather(
                    *(client.get("/v1/runs/run_x", headers=headers("sk-burst")) for _ in range(60))
                )

        answers = asyncio.run(burst())
        statuses = Counter(response.status_code for response in answers)
        assert statuses == {404: 20, 429: 40}
        assert len({response.headers["x-mock-worker"] for response in answers}) > 1
    finally:
        server.stop()


def test_serve_refuses_several_workers_on_the_in_memory_store() -> None:
    result = subprocess.run(
        [*serve_command(), "serve", "--workers", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MOCK_RUNBASE_STORE": "memory"},
    )
    assert result.returncode == 2
    assert "--workers 3 needs a shared store" in result.stderr
    assert "--store redis://" in result.stderr


# --- faults ------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: the fault tests stop it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_killed_worker_loses_no_created_run_and_the_others_keep_serving(
    own_redis: RedisServer,
) -> None:
    server = start_workers("--store", own_redis.url, "--timing", "fast")
    try:
        created: list[dict[str, Any]] = []
        failures: Counter[str] = Counter()
        victim: dict[str, int] = {}

        async def client_loop(client: httpx.AsyncClient, index: int) -> None:
            for attempt in range(8):
                key = f"sk-fault-{index}"
                try:
                    response = await client.post("/v1/runs", json=BODY, headers=headers(key))
                except httpx.TransportError:
                    failures["transport"] += 1  # the killed worker's connections
                    continue
                if response.status_code == 200:
                    created.append({"id": response.json()["id"], "key": key})
                else:
                    failures[str(response.status_code)] += 1
                if index == 0 and attempt == 2 and not victim:
                    victim["pid"] = int(response.headers["x-mock-worker"])
                    os.kill(victim["pid"], signal.SIGKILL)

        async def load() -> None:
            async with httpx.AsyncClient(
                base_url=server.base, limits=FRESH_CONNECTIONS, timeout=PATIENT
            ) as client:
                await asyncio.wait_for(
                    asyncio.gather(*(client_loop(client, i) for i in range(50))), LOAD_TIMEOUT_S
                )

        asyncio.run(load())
        assert victim, "no worker was killed"
        assert not (set(failures) - {"transport"}), failures
        assert len(created) >= 50 * 8 - failures["transport"]
        for run in created:  # every run the mock acknowledged is still there
            response = httpx.get(f"{server.base}/v1/runs/{run['id']}", headers=headers(run["key"]))
            assert response.status_code == 200, response.text
            assert int(response.headers["x-mock-worker"]) != victim["pid"]
    finally:
        server.stop()


def test_a_redis_outage_answers_503_and_the_mock_recovers(own_redis: RedisServer) -> None:
    server = start_workers("--store", own_redis.url, "--timing", "fast", workers=2)
    key = headers("sk-outage")
    try:
        before = httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key)
        assert before.status_code == 200
        own_redis.stop()

        health = httpx.get(f"{server.base}/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        refused = httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_unavailable"
        polled = httpx.get(f"{server.base}/v1/runs/{before.json()['id']}", headers=key)
        assert polled.status_code == 503
        assert server.process.poll() is None  # still running

        own_redis.start()  # empty: persistence is off
        assert httpx.get(f"{server.base}/healthz").status_code == 200
        again = httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key)
        assert again.status_code == 200, again.text
        gone = httpx.get(f"{server.base}/v1/runs/{before.json()['id']}", headers=key)
        assert gone.status_code == 404  # the old Redis' data is gone, and the mock says so
    finally:
        server.stop()
