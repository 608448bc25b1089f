"""The contract suite catches broken servers: each app here is the mock with one deliberate
fault, judged in process (``pytest contracts --app``), and the run must fail with that finding.

The apps are module attributes so that the suite, in its own process, can import them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.app import create_app
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec
from tests.served import Server, serve_command

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec()
GPT = SPEC.catalog.models["openai/gpt-image-2"]
CONDITION = GPT.input_schema["if"]["properties"]  # {"resolution": {"const": <the 4K value>}}
WIDE = GPT.input_schema["then"]["properties"]["aspect_ratio"]["enum"]
RATIOS = GPT.input_schema["properties"]["aspect_ratio"]["enum"]


class Rewrite:
    """An ASGI middleware that rewrites request bodies and/or response bodies of an app."""

    def __init__(
        self,
        app: ASGIApp,
        request: Callable[[Scope, bytes], bytes] = lambda scope, body: body,
        response: Callable[[bytes], bytes] = lambda body: body,
    ) -> None:
        self.app, self.request, self.response = app, request, response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = self.request(scope, b"".join(chunks))

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            content = self.response(b"".join(parts))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, replay, capture)


def mock() -> ASGIApp:
    return create_app(MockSettings(clock="virtual", timing="fast", rate_limit=None))


def widen_4k(scope: Scope, body: bytes) -> bytes:
    """The fault: a 4K create with a narrow ratio (or none) is quietly made wide, so it passes."""
    try:
        parsed = json.loads(body)
        fields = parsed["input"]
        narrow = fields.get("aspect_ratio", GPT.defaults["aspect_ratio"]) in RATIOS
        if narrow and all(fields.get(k) == v["const"] for k, v in CONDITION.items()):
            fields["aspect_ratio"] = WIDE[0]
            return json.dumps(parsed).encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return body


def accepts_4k_with_any_ratio() -> ASGIApp:
    return Rewrite(mock(), request=widen_4k)


def lower_case_rate_limited() -> ASGIApp:
    """The fault: 429 bodies say ``rate_limited`` instead of the documented ``RATE_LIMITED``."""
    return Rewrite(mock(), response=lambda body: body.replace(b'"RATE_LIMITED"', b'"rate_limited"'))


def without_sound(body: bytes) -> bytes:
    """An MP4 remuxed with its video track alone (any other body as it was)."""
    if body[4:8] != b"ftyp":
        return body
    out = io.BytesIO()
    with av.open(io.BytesIO(body), "r") as source, av.open(out, "w", format="mp4") as target:
        video = source.streams.video[0]
        copy = target.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = copy
                target.mux(packet)
    return out.getvalue()


def videos_without_sound() -> ASGIApp:
    """The fault: every video is served without its sound track, whatever the catalog says."""
    return Rewrite(mock(), response=without_sound)


# The contracts explain their failures themselves, so pytest's assertion rewriting (costly at
# start-up where bytecode is not cached) is not needed.
QUIET = ("-p", "no:cacheprovider", "--assert=plain")


def run_contracts(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pytest contracts ARGS`` in a fresh process, from a scratch directory (its own
    hypothesis database), so a deliberate failure leaves no trace in the repository's."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "contracts"), *QUIET, *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_suite_catches_a_server_that_accepts_4k_with_a_narrow_ratio(tmp_path: Path) -> None:
    app = "tests.test_contracts_broken:accepts_4k_with_any_ratio"
    check = "invalid_input_gets_its_documented_code"
    result = run_contracts(tmp_path, "--app", app, "--check", check, "--contract-profile", "quick")
    output = result.stdout
    assert result.returncode == 1, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, failed  # 4K with a narrow ratio, and 4K with no ratio (1:1)
    assert all("resolution=4K" in line for line in failed), failed
    assert "Received:   200" in output and "Documented: 400" in output
    assert "Reproduce with:" in output and "curl -sS -X POST" in output
    assert "Minimal failing example" in output


def test_suite_catches_a_lower_case_rate_limited_code(tmp_path: Path) -> None:
    app = "tests.test_contracts_broken:lower_case_rate_limited"
    check = "rate_limited_is_upper_case_429"
    result = run_contracts(tmp_path, "--app", app, "--check", check, "--contract-profile", "quick")
    output = result.stdout
    assert result.returncode == 1, output
    assert "expected 429 RATE_LIMITED" in output
    assert '"code":"rate_limited"' in output


def test_suite_catches_a_video_served_without_its_sound(tmp_path: Path) -> None:
    app = "tests.test_contracts_broken:videos_without_sound"
    check = "succeeded_run_serves_media_of_catalog_size"
    result = run_contracts(tmp_path, "--app", app, "--check", check, "--contract-profile", "quick")
    output = result.stdout
    assert result.returncode == 1, output
    assert "output video differs from the catalog: sound track" in output
    assert "without audio" in output and "with audio" in output
    assert "Reproduce with:" in output and "curl -sS -X GET" in output


# --- the rate limit: Runbase documents 20 requests per 10 s per key ----------------------------

RATE_LIMIT_CHECK = ("--check", "rate_limit_is_per_key_as_documented")
DOCUMENTED_LIMIT = "Documented: 20 requests per 10 s per key: request 21"


def judge_rate_limit(tmp_path: Path, *serve_args: str, declared: bool = False) -> tuple[int, str]:
    """``mock-runbase contract --check rate_limit_is_per_key_as_documented`` against a mock
    served with ``serve_args`` (virtual clock: the contract's waits move it, never sleep)."""
    server = Server("--clock", "virtual", "--timing", "fast", "--log-level", "warning", *serve_args)
    try:
        result = subprocess.run(
            [*serve_command(), "contract", "--base-url", f"{server.base}/v1", *RATE_LIMIT_CHECK,
             *(["--no-rate-limit"] if declared else []), "--", *QUIET, "-rs"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        server.stop()
    return result.returncode, result.stdout


@pytest.mark.parametrize(
    ("serve_args", "seen"),
    [
        (("--rate-limit", "100/10"), "request 21 answered 404; the first 429 came on request 101"),
        (("--no-rate-limit",), "request 21 answered 404; no 429 at all (101 requests of one key"),
        (("--rate-limit", "10/10"), "Received:   429 on request 11 of one key"),
        (("--rate-limit", "20/60"), "still rate limited 10 s after the limit engaged"),
    ],
    ids=["100/10", "undeclared-none", "10/10", "20/60"],
)
def test_suite_fails_a_server_not_limited_as_documented(
    tmp_path: Path, serve_args: tuple[str, ...], seen: str
) -> None:
    code, output = judge_rate_limit(tmp_path, *serve_args)
    assert code == 1, output
    assert seen in output
    assert DOCUMENTED_LIMIT in output or "once 10 s have passed the key is served" in output
    assert "0 contracts passed, 1 failed, 0 skipped" in output


def test_suite_skips_a_server_declared_without_a_limiter_saying_what_it_saw(
    tmp_path: Path,
) -> None:
    code, output = judge_rate_limit(tmp_path, "--no-rate-limit", declared=True)
    assert code == 0, output
    assert "declared without a rate limiter (--no-rate-limit); 21 requests of one key in" in output
    assert "answered without a 429" in output
    assert "0 contracts passed, 0 failed, 1 skipped" in output


def test_suite_passes_a_server_limited_as_documented(tmp_path: Path) -> None:
    code, output = judge_rate_limit(tmp_path)  # serve's default: --rate-limit 20/10
    assert code == 0, output
    assert "1 contracts passed, 0 failed, 0 skipped" in output
    code, output = judge_rate_limit(tmp_path, declared=True)  # it excuses a missing 429 only
    assert code == 0, output
    assert "1 contracts passed, 0 failed, 0 skipped" in output
