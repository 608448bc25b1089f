"""pytest fixtures for apps that call Runbase (auto-loaded when mock-runbase is installed).

    def test_my_app_survives_a_failed_run(runbase_mock):
        runbase_mock.add_rule("fail", times=1)
        app = MyApp(runbase_mock.base_url, runbase_mock.api_key)
        ...
        runbase_mock.clock.advance(10)

One server per test session (per xdist worker) on a real loopback port; each test gets a
fresh mock (reset state, its own key, virtual clock at its start, instant timing, no rate
limit unless asked). Ask for more with a marker:

    @pytest.mark.runbase(timing="realistic", rate_limit="20/10", balance_usd=0.01, env=True)

``env=True`` sets ``RUNBASE_BASE_URL`` and ``RUNBASE_API_KEY`` for the test. Override the
``runbase_settings`` fixture in a ``conftest.py`` to change the session server itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from mock_runbase.app import create_app
from mock_runbase.settings import MockSettings
from mock_runbase.testing import TEST_DEFAULTS, MockServer, RunbaseMock

MARKER = "runbase"
FRESH_OPTIONS = ("timing", "rate_limit", "balance_usd", "seed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(timing=, rate_limit=, balance_usd=, seed=, env=): "
        "settings of the runbase_mock fixture for this test",
    )


@pytest.fixture(scope="session")
def runbase_settings() -> MockSettings:
    """The session server's settings; override in conftest.py to change them."""
    return TEST_DEFAULTS


@pytest.fixture(scope="session")
def runbase_server(runbase_settings: MockSettings) -> Iterator[MockServer]:
    server = MockServer(runbase_settings).start()
    yield server
    server.stop()


@pytest.fixture
def runbase_mock(
    runbase_server: MockServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunbaseMock]:
    """A fresh mock for this test, on a real port: ``base_url``, ``api_key``, ``clock``, ..."""
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker else {}
    unknown = set(options) - {*FRESH_OPTIONS, "env"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: unknown options {sorted(unknown)}")
    env = options.pop("env", False)
    mock = runbase_server.fresh(**options)
    if env:
        monkeypatch.setenv("RUNBASE_BASE_URL", mock.base_url)
        monkeypatch.setenv("RUNBASE_API_KEY", mock.api_key)
    yield mock
    mock.close()


@pytest.fixture
def runbase_asgi_app(runbase_settings: MockSettings) -> Starlette:
    """A fresh in-process app for ``httpx.AsyncClient(transport=httpx.ASGITransport(app))``."""
    return create_app(runbase_settings)
