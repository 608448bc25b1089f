"""``serve --state FILE``: the state loaded at start (if the file is there) and saved at exit,
so a scenario survives a restart; a file the mock cannot load refuses start."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from mock_runbase.cli import main
from tests.conftest import GPT, KEY, OTHER_KEY
from tests.served import Server


@pytest.fixture(autouse=True)
def no_mock_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOCK_RUNBASE_STATE", "MOCK_RUNBASE_STORE", "MOCK_RUNBASE_CLOCK"):
        monkeypatch.delenv(name, raising=False)


def call(server: Server, method: str, path: str, key: str | None = None, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.request(method, server.base + path, headers=headers, timeout=30, **options)
    assert response.status_code < 500, response.text
    return response.json()


def what_a_client_sees(server: Server, ids: list[str]) -> list[Any]:
    return [
        [
            call(server, "GET", f"/v1/runs/{run_id}", key)
            for run_id in ids
            for key in (KEY, OTHER_KEY)
        ],
        call(server, "GET", "/_mock/accounts"),
        call(server, "GET", "/_mock/clock"),
        call(server, "GET", "/_mock/rules"),
    ]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_state_survives_a_restart(tmp_path: Path, how: signal.Signals) -> None:
    path = tmp_path / "scenario.json"
    flags = ("--clock", "virtual", "--no-rate-limit", "--public-url", "http://mock.test")
    first = Server(*flags, "--state", str(path))
    rule = {"match": {"endpoint": "create"}, "effect": {"scenario": "fail"}, "every": 2}
    call(first, "POST", "/_mock/rules", json=rule)
    body = {"model": GPT, "input": {"prompt": "a lighthouse"}}
    ids = [call(first, "POST", "/v1/runs", key, json=body)["id"] for key in (KEY, OTHER_KEY, KEY)]
    call(first, "POST", "/_mock/clock/advance", json={"seconds": 2})
    before = what_a_client_sees(first, ids)
    code, output = first.stop(how)
    assert code in (0, -how), output  # uvicorn may end by the signal it handled
    assert "not there yet: starts empty; saved at exit" in output
    saved = json.loads(path.read_text())
    assert [run["id"] for run in saved["runs"]] == ids and saved["version"] == 1

    again = Server(*flags, "--state", str(path))
    try:
        assert what_a_client_sees(again, ids) == before
        later = call(again, "POST", "/v1/runs", KEY, json=body)  # the 4th: the rule's 2nd hit
        call(again, "POST", "/_mock/clock/advance", json={"seconds": 10})
        assert call(again, "GET", f"/v1/runs/{later['id']}", KEY)["status"] == "failed"
        assert later["id"] not in ids
    finally:
        code, output = again.stop(how)
    assert "3 runs, 0 accounts changed, 1 rules, clock at 2026-06-01T12:00:02.000Z" in output
    assert len(json.loads(path.read_text())["runs"]) == 4


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["serve", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", ["not JSON"]),
        (b"[]", ["a JSON object"]),
        (json.dumps({"version": 2}).encode(), ["version: 2: this mock reads version 1"]),
        (json.dumps({"version": 1}).encode(), ['"clock" is a required property']),
    ],
)
def test_a_state_file_the_mock_cannot_load_refuses_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, words: list[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    error = refusal(capsys, "--state", str(path), "--clock", "virtual")
    assert f"--state {path}: " in error
    for word in words:
        assert word in error
    assert path.read_bytes() == content  # left as it was


def test_a_virtual_clocks_state_refuses_a_real_clock_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "clock": {"now": "2026-06-01T12:00:00.000Z", "virtual": True},
                "counters": {"runs": 0, "rules": 0},
                "accounts": {},
                "ledgers": {},
                "runs": [],
                "pendingRefunds": [],
                "rules": [],
            }
        )
    )
    error = refusal(capsys, "--state", str(path))
    assert "taken on a virtual clock" in error and "--clock virtual" in error


def test_a_state_file_needs_the_memory_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = refusal(capsys, "--state", str(tmp_path / "s.json"), "--store", "redis://cache:6379")
    assert "--state" in error and "a Redis store keeps its own" in error
