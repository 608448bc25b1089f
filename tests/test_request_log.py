"""A compact line per request: what ``serve`` shows by default instead of uvicorn's access log
(which halved the mock's throughput); ``--log-level warning`` turns it off."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import time

import httpx
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.app import create_app
from mock_runbase.request_log import MAX_PENDING, RequestLog, logged
from mock_runbase.settings import MockSettings
from tests.served import Server

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (\S+) (\S+) (\d{3}|dropped) \d+\.\d ms(?: (\S+))?$")
AT_MS = 1_780_000_000_000  # a whole second
CREATE = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox"}}
AUTH = {"Authorization": "Bearer sk-test"}


def lines_of(text: str) -> list[tuple[str, ...]]:
    found = [LINE.match(line) for line in text.splitlines()]
    return [match.groups("") for match in found if match]


def test_lines_wait_for_the_timer_and_are_written_together() -> None:
    stream = io.StringIO()

    async def scenario() -> tuple[str, str]:
        log = RequestLog(stream, wait_s=0)  # the next turn of the loop
        log.add(AT_MS, "POST", "/v1/runs", b"", 200, 0.0012, "run_abc")
        log.add(AT_MS + 5, "GET", "/v1/runs/run_x", b"", 404, 0.0003, "run_not_found")
        log.add(AT_MS + 1000, "POST", "/v1/runs", b"", None, 0.0001, None)
        log.add(AT_MS + 1001, "GET", "/_mock/requests", b"status=4xx", 200, 0.0005, None)
        before = stream.getvalue()
        for _ in range(3):
            await asyncio.sleep(0)
        return before, stream.getvalue()

    before, after = asyncio.run(scenario())
    assert before == ""
    assert lines_of(after) == [
        ("POST", "/v1/runs", "200", "run_abc"),
        ("GET", "/v1/runs/run_x", "404", "run_not_found"),
        ("POST", "/v1/runs", "dropped", ""),
        ("GET", "/_mock/requests?status=4xx", "200", ""),
    ]
    assert len(after.splitlines()) == 4
    clock = [time.strftime("%H:%M:%S", time.localtime(AT_MS // 1000 + n)) for n in (0, 1)]
    arrived = [line.split(" ")[0] for line in after.splitlines()]
    assert arrived == [f"{clock[0]}.000", f"{clock[0]}.005", f"{clock[1]}.000", f"{clock[1]}.001"]
    assert after.splitlines()[0].endswith(" 200 1.2 ms run_abc")


def test_a_full_batch_is_written_at_once_and_a_broken_stream_fails_nothing() -> None:
    stream = io.StringIO()
    log = RequestLog(stream)

    async def many() -> None:
        for n in range(MAX_PENDING):
            log.add(AT_MS, "GET", f"/v1/runs/run_{n}", b"", 200, 0.0001, None)

    asyncio.run(many())
    assert len(stream.getvalue().splitlines()) == MAX_PENDING
    stream.close()
    # no loop: written now, and lost
    log.add(AT_MS, "GET", "/v1/runs/run_x", b"", 200, 0.0001, None)
    log.flush()
    assert log.pending == []


@given(st.sampled_from(["/healthz", "/favicon.ico", "/_mock/ui/state", "/docs/assets/x.js"]))
def test_probes_and_the_dashboards_polling_get_no_line(path: str) -> None:
    assert not logged(path)


@given(st.sampled_from(["/v1/runs", "/runs/run_x", "/_mock/reset", "/_mock/ui", "/docs"]))
def test_api_and_control_calls_get_a_line(path: str) -> None:
    assert logged(path)


def test_the_app_writes_a_line_per_request_with_its_error_code_or_run() -> None:
    app = create_app(MockSettings(log_requests=True, rate_limit=None))
    stream = io.StringIO()
    assert app.request_log is not None
    app.request_log.stream = stream

    async def scenario() -> str:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            created = (await client.post("/v1/runs", json=CREATE, headers=AUTH)).json()
            await client.get("/v1/runs/run_nope", headers=AUTH)
            await client.get("/healthz")
            await client.post("/_mock/reset")
        assert app.request_log is not None
        app.request_log.flush()
        return str(created["id"])

    run_id = asyncio.run(scenario())
    assert lines_of(stream.getvalue()) == [
        ("POST", "/v1/runs", "200", run_id),
        ("GET", "/v1/runs/run_nope", "404", "run_not_found"),
        ("POST", "/_mock/reset", "200", ""),
    ]


def test_quiet_settings_make_no_request_log() -> None:
    assert create_app(MockSettings()).request_log is None


def test_serve_shows_a_line_per_request_by_default_and_none_at_warning() -> None:
    for flags, shown in (((), True), (("--log-level", "warning"), False)):
        server = Server("--no-rate-limit", *flags)
        try:
            created = httpx.post(f"{server.base}/v1/runs", json=CREATE, headers=AUTH).json()
            httpx.get(f"{server.base}/v1/runs/{created['id']}", headers=AUTH)
        finally:
            code, output = server.stop(signal.SIGINT)
        assert code == 0
        found = lines_of(output)
        wanted = [
            ("POST", "/v1/runs", "200", created["id"]),
            ("GET", f"/v1/runs/{created['id']}", "200", ""),
        ]
        assert found == (wanted if shown else []), output
        assert '"POST /v1/runs HTTP/1.1"' not in output  # uvicorn's access log is off
