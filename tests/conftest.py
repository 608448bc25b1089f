from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.clock import VirtualClock
from mock_runbase.settings import MockSettings
from tests.redis_server import RedisServer

pytest_plugins = ["pytester"]

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parent.parent
GPT = "openai/gpt-image-2"
KEY = "sk-test-alice"
OTHER_KEY = "sk-test-bob"
CLIENT_IP = "203.0.113.7"


@dataclass
class Mock:
    """An in-process mock on a virtual clock, and a client that talks to it."""

    client: TestClient
    clock: VirtualClock
    settings: MockSettings

    def create(
        self, key: str = KEY, scenario: str | None = None, **input_fields: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if scenario:
            headers["X-Mock-Scenario"] = scenario
        body = {"model": GPT, "input": {"prompt": "a lighthouse at dawn", **input_fields}}
        return self.client.post("/v1/runs", json=body, headers=headers)

    def create_run(self, model: str, fields: dict[str, Any], key: str = KEY) -> httpx.Response:
        """A create of any model of the catalog."""
        body = {"model": model, "input": fields}
        return self.client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"})

    def get(self, run_id: str, key: str = KEY, prefix: str = "/v1") -> httpx.Response:
        return self.client.get(
            f"{prefix}/runs/{run_id}", headers={"Authorization": f"Bearer {key}"}
        )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def account(self, key: str = KEY) -> dict[str, Any]:
        response = self.client.get("/_mock/account", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def balance(self, key: str = KEY) -> int:
        return int(self.account(key)["balanceUsd"])

    def image(self, url: str) -> Image.Image:
        response = self.client.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        return Image.open(io.BytesIO(response.content))


MockFactory = Callable[..., Mock]


@pytest.fixture
def mock_store() -> str:
    """Where the mocks of a test keep their state; modules that must hold on both stores
    override this fixture with ``params=["memory", "redis"]``."""
    return "memory"


@pytest.fixture
def make_mock(mock_store: str, request: pytest.FixtureRequest) -> Iterator[MockFactory]:
    clients: list[TestClient] = []
    store = mock_store
    if mock_store == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()

    def factory(client_ip: str = CLIENT_IP, **overrides: Any) -> Mock:
        where = store
        if store != "memory":  # each mock its own Redis database: mocks of a test are apart
            where = f"{server.url.rsplit('/', 1)[0]}/{len(clients)}"
        base = MockSettings(timing="realistic", clock="virtual", rate_limit=None, store=where)
        mock_settings = replace(base, **overrides)
        clock = VirtualClock()
        app = create_app(mock_settings, clock=clock if mock_settings.clock == "virtual" else None)
        client = TestClient(app, base_url="http://mock.test", client=(client_ip, 50000))
        if store != "memory":
            client.__enter__()  # one event loop for the client's life: Redis connections need it
        clients.append(client)
        return Mock(client=client, clock=clock, settings=mock_settings)

    yield factory
    for client in clients:
        if store != "memory":
            client.__exit__(None, None, None)
        client.close()


@pytest.fixture
def mock(make_mock: MockFactory) -> Mock:
    return make_mock()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for this test session (per xdist worker)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per test session (per xdist worker)."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(pip, check=True, capture_output=True)
    [built] = out.glob("mock_runbase-*.whl")
    return built


@pytest.fixture(scope="session")
def installed_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed alone into a directory of its own (``pip install --target``): put it
    on PYTHONPATH to import the installed package instead of the source tree. Read only."""
    site = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    return site
