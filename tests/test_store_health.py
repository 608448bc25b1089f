"""A shared store that does not answer at start-up fails the start loudly (after a short wait
for containers started together); one that goes away later is reported by ``/healthz`` in its
documented body."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.redis_store import STARTUP_WAIT_S, redacted_url, wait_until_answering
from mock_runbase.settings import MockSettings
from tests.conftest import ROOT
from tests.redis_server import RedisServer, redis_server_binary
from tests.served import Server, free_port, serve_command

BOUND_S = 30  # a start-up that neither fails nor serves within this is a failure too
BODY = {"model": "openai/gpt-image-2", "input": {"prompt": "a lighthouse at dawn"}}


class FakeTime:
    """monotonic() and sleep() of a test: sleeping moves the time, nothing waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pings(failures: list[Exception]) -> tuple[list[int], Callable[[], None]]:
    calls = [0]

    def ping() -> None:
        calls[0] += 1
        if failures:
            raise failures.pop(0)

    return calls, ping


def test_start_up_retries_until_redis_answers() -> None:
    fake, told = FakeTime(), []
    calls, ping = pings([RedisConnectionError("refused")] * 3)
    wait_until_answering(
        ping,
        timeout_s=5,
        retry_s=0.25,
        on_retry=told.append,
        monotonic=fake.monotonic,
        sleep=fake.sleep,
    )
    assert calls == [4] and fake.slept == [0.25] * 3
    assert [str(error) for error in told] == ["refused"]  # told once, not at every retry


def test_start_up_gives_up_after_its_bounded_wait() -> None:
    fake = FakeTime()
    _, ping = pings([RedisConnectionError(f"refused {n}") for n in range(1000)])
    with pytest.raises(RedisConnectionError, match="refused"):
        wait_until_answering(
            ping,
            timeout_s=5,
            retry_s=0.25,
            monotonic=fake.monotonic,
            sleep=fake.sleep,
        )
    assert 4.5 <= sum(fake.slept) <= 5


def test_a_refused_password_fails_at_once() -> None:
    fake = FakeTime()
    calls, ping = pings([AuthenticationError("invalid password")])
    with pytest.raises(AuthenticationError):
        wait_until_answering(
            ping,
            timeout_s=5,
            retry_s=0.25,
            monotonic=fake.monotonic,
            sleep=fake.sleep,
        )
    assert calls == [1] and fake.slept == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:s3cret@cache/2", "rediss://app:***@cache/2"),
        ("redis://s3cret@cache", "redis://***@cache"),
        ("redis://app:p@ss@cache/0", "redis://app:***@cache/0"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_store_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


PASSWORDS = st.text(st.characters(exclude_characters="/?#&", codec="ascii"), min_size=1).map(
    lambda text: "pw-" + text
)


@given(user=st.text("abcdefgh", max_size=8), password=PASSWORDS)
def test_no_password_survives_redaction(user: str, password: str) -> None:
    for url, rest in [
        (f"redis://{user}:{password}@cache:6379/0", "@cache:6379/0"),
        (f"unix:///run/redis.sock?password={password}&db=0", "unix:///run/redis.sock?"),
    ]:
        shown = redacted_url(url)
        assert password not in shown and "***" in shown and rest in shown


# --- serve, as a process --------------------------------------------------------------------


def test_serve_exits_2_naming_the_store_when_redis_never_answers() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [*serve_command(), "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        env={**os.environ, "MOCK_RUNBASE_STORE": f"redis://:hunter2@127.0.0.1:{port}/0"},
    )
    took = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"mock-runbase: cannot use the store redis://:***@127.0.0.1:{port}/0 (retried for 5 s): "
    )
    assert "Connection refused" in last
    assert "hunter2" not in result.stdout + result.stderr
    assert "mock ready" not in result.stdout + result.stderr
    assert STARTUP_WAIT_S <= took < BOUND_S


def test_serve_waits_for_a_redis_that_comes_up_a_moment_later(tmp_path: Path) -> None:
    redis_server_binary()  # skips without redis-server
    late = RedisServer(tmp_path)
    port = free_port()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [*serve_command(), "serve", "--port", str(port), "--store", late.url],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + BOUND_S
            while "waiting up to 5 s for the store" not in read(log):
                assert process.poll() is None, read(log)
                assert time.monotonic() < deadline, read(log)
                time.sleep(0.02)  # waiting for a process to start, not for mock time
            late.start()
            while True:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, read(log)
                    assert time.monotonic() < deadline, read(log)
                    time.sleep(0.02)
            assert health.json() == {"status": "ok"}
            assert "mock ready" in read(log)
        finally:
            process.terminate()
            process.wait(timeout=10)
            late.stop()


def read(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()


# --- /healthz once the store has gone away ----------------------------------------------------

CONTROL_DOCUMENT = yaml.safe_load((ROOT / "mock-openapi.yaml").read_text())


def assert_documented_health(response: httpx.Response) -> None:
    """Status and body as ``mock-openapi.yaml`` documents them for ``GET /healthz``."""
    answers = CONTROL_DOCUMENT["paths"]["/healthz"]["get"]["responses"]
    assert str(response.status_code) in answers, response.text
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), schema)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_healthz_answers_its_documented_unhealthy_body_before_any_other_request(
    own_redis: RedisServer,
) -> None:
    """A process whose first request is the probe (a fresh replica or worker)."""
    app = create_app(MockSettings(store=own_redis.url))
    with TestClient(app) as client:
        own_redis.stop()
        health = client.get("/healthz")
        assert_documented_health(health)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert "connecting to 127.0.0.1" in health.json()["reason"]
        own_redis.start()
        assert client.get("/healthz").json() == {"status": "ok"}
        assert_documented_health(client.get("/healthz"))


def test_healthz_on_the_virtual_clock_answers_unhealthy_while_redis_is_away(
    own_redis: RedisServer,
) -> None:
    """The clock lives in Redis too: the probe must not need it."""
    server = Server("--store", own_redis.url, "--clock", "virtual", "--log-level", "warning")
    try:
        key = {"Authorization": "Bearer sk-health"}
        assert httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key).status_code == 200
        own_redis.stop()
        health = httpx.get(f"{server.base}/healthz")
        assert_documented_health(health)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert health.json()["reason"]
        assert server.process.poll() is None
        own_redis.start()
        assert httpx.get(f"{server.base}/healthz").json() == {"status": "ok"}
    finally:
        server.stop()


def test_api_calls_on_the_virtual_clock_answer_store_unavailable_while_redis_is_away(
    own_redis: RedisServer,
) -> None:
    """The journal reads the shared clock first: with Redis away, a poll or a create must
    still get the documented JSON 503, not a bare 500 from the journal."""
    server = Server("--store", own_redis.url, "--clock", "virtual", "--log-level", "warning")
    try:
        key = {"Authorization": "Bearer sk-health"}
        created = httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key)
        assert created.status_code == 200
        own_redis.stop()
        for answer in (
            httpx.get(f"{server.base}/v1/runs/{created.json()['id']}", headers=key),
            httpx.post(f"{server.base}/v1/runs", json=BODY, headers=key),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "store_unavailable"
        assert server.process.poll() is None
    finally:
        server.stop()
