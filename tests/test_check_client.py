"""``mock-runbase check-client``: a client in another process, judged over plans, shrunk.

The sample client (tests/clients/sample_client.py) runs as a command, as any client would:
robust, it passes; with each deliberate flaw, the check fails with the smallest plan that
shows the flaw, and its report (``--report``) names the cause.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = [sys.executable, "-m", "tests.clients.sample_client", "--poll-interval", "0.02"]
FAST = ["--min-poll-interval", "0.01"]


def check_client(
    tmp_path: Path, *options: str, client: list[str] = CLIENT, env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, Any]]:
    """Exit status, output, and the --report (empty if none was written)."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "mock_runbase", "check-client", *options, "--report", str(report),
         "--", *client],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    data = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, data


def test_the_robust_client_passes_and_the_summary_says_what_was_tried(tmp_path: Path) -> None:
    code, output, report = check_client(tmp_path, "--examples", "15", "--seed", "3", *FAST)
    assert code == 0, output
    assert report["passed"] is True
    assert report["examples"] == 15
    assert report["requestsJudged"] >= 15
    assert sum(report["plansByKind"].values()) >= 15  # every plan holds a run at least
    assert "passed: 15 examples" in output
    assert "--seed 3 repeats this run" in output


@pytest.mark.parametrize(
    ("flaw", "cause", "steps"),
    [  # the minimal plan's steps: the one fault and the run, or the run alone
        ("ignores-retry-after", "retry-after-ignored", ["answers 429 RATE_LIMITED", "makes a run"]),
        ("crashes-on-failed-run", "the client exited 1", ["create 1 makes a run that has failed"]),
        ("dropped-create-is-success", "gave-up-on-transient", ["create 1 ", "create 2 makes a"]),
        ("polls-stuck-run-for-ever", "it polled one run", ["create 1 makes a run that is then "
                                                           "processing for ever"]),
    ],
)  # fmt: skip
def test_each_fragile_client_fails_with_the_smallest_plan_naming_its_flaw(
    tmp_path: Path, flaw: str, cause: str, steps: list[str]
) -> None:
    code, output, report = check_client(
        tmp_path, "--examples", "100", "--seed", "1", *FAST,
        client=[*CLIENT, "--flaw", flaw],
    )  # fmt: skip
    assert code == 1, output
    minimal = report["minimal"]
    assert any(cause in line for line in minimal["causes"]), minimal["causes"]
    assert len(minimal["steps"]) == len(steps), minimal["steps"]
    for part in steps:
        assert any(part in step for step in minimal["steps"]), (part, minimal["steps"])
    assert "the smallest plan that breaks the client:" in output
    assert "POST /_mock/rules" in output
    if flaw == "ignores-retry-after":  # shrinking: one 429, nothing else but the run
        assert len([step for step in minimal["steps"] if "429" in step]) == 1
        assert len(minimal["rules"]) == 2
        # the report's rules reproduce the failure on any running mock
        assert "retry-after-ignored" in reproduced(minimal["rules"], flaw)
    if flaw == "crashes-on-failed-run":
        assert "KeyError: 'detail'" in minimal["output"]


def reproduced(rules: list[dict[str, Any]], flaw: str) -> list[str]:
    """The rules broken when the flawed client meets ``rules`` on a mock of its own."""
    from mock_runbase.testing import serve

    with serve(timing="polls") as mock:
        for rule in rules:
            assert mock.control.post("/_mock/rules", json=rule).status_code == 201
        done = subprocess.run(
            [*CLIENT, "--flaw", flaw], cwd=ROOT, capture_output=True, text=True,
            env={"RUNBASE_BASE_URL": mock.base_url, "RUNBASE_API_KEY": mock.api_key,
                 "PATH": "/usr/bin:/bin"},
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [v.rule for v in mock.client_violations(min_poll_interval=0.01)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--examples", "0"], "--examples must be 1 or more"),
        (["--faults", "drop,explode"], "'explode' not among"),
        (["--endpoints", "poll"], "'poll' not among create, get, file"),
        (["--off", "nonsense"], "off: nonsense not among"),
        (["--min-poll-interval", "-1"], "min_poll_interval must be 0 or more"),
        (["--models", "openai/gpt-image-2,no/such"], "--models: no/such not a model of the mock"),
    ],
)
def test_a_bad_option_exits_2_naming_it_before_anything_runs(
    tmp_path: Path, options: list[str], message: str
) -> None:
    code, output, report = check_client(tmp_path, *options)
    assert code == 2
    assert message in output
    assert report == {}


def test_no_command_or_a_missing_one_exits_2(tmp_path: Path) -> None:
    code, output, _ = check_client(tmp_path, client=[])
    assert (code, "give the client's command after --" in output) == (2, True)
    code, output, _ = check_client(tmp_path, "--examples", "1", client=["no-such-client-cmd"])
    assert code == 2
    assert "cannot run 'no-such-client-cmd'" in output


def test_a_client_that_never_calls_the_mock_fails(tmp_path: Path) -> None:
    code, _, report = check_client(tmp_path, "--examples", "3", client=["true"])
    assert code == 1
    assert any("no-requests" in cause for cause in report["minimal"]["causes"])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed")
def test_the_readmes_node_client_passes(tmp_path: Path) -> None:
    code, output, report = check_client(
        tmp_path, "--examples", "15", "--seed", "2", *FAST,
        client=["node", "tests/clients/sample_client.mjs"], env={"POLL_INTERVAL_MS": "20"},
    )  # fmt: skip
    assert code == 0, output
    assert report["examples"] == 15
