"""The contract suite as users run it: ``pytest contracts --base-url`` from the repository root
against a real ``mock-runbase serve`` process, with a JUnit report; ``mock-runbase contract``
from a checkout; and the same command from an installed wheel, away from the source tree.

(``pytest contracts`` against the in-process mock runs as part of this repository's tests:
``contracts`` is in ``testpaths``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.served import Server, serve_command
from tests.test_contracts_broken import QUIET, ROOT

REQUIRED = {  # the properties issue #6 lists, and the control API's
    "valid_input_is_accepted_pending_at_catalog_price",
    "invalid_input_gets_its_documented_code",
    "polling_is_monotonic",
    "succeeded_run_serves_media_of_catalog_size",
    "run_is_invisible_to_another_key",
    "unknown_run_is_run_not_found",
    "error_bodies_have_message_and_code",
    "schemathesis_conformance",
    "schemathesis_stateful",
    "rejected_request_changes_nothing",
    "failed_run_is_refunded_in_full",
    "insufficient_balance_is_402",
    "rate_limited_is_upper_case_429",
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # warning: no line for each of thousands of requests in the server's log file; the
    # documented rate limit (serve's default), which rate_limit_is_per_key_as_documented judges
    running = Server("--clock", "virtual", "--timing", "fast", "--log-level", "warning")
    yield running
    running.stop()


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def junit_contracts(path: Path) -> dict[str, str]:
    """contract name -> passed / failed / skipped, from a JUnit XML report."""
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(path).iter("testcase"):
        names = [p.get("value") for p in case.iter("property") if p.get("name") == "contract"]
        outcome = next(
            (tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None),
            "passed",
        )
        for name in names:
            if name and outcomes.get(name, "passed") == "passed":
                outcomes[name] = outcome
    return outcomes


def test_pytest_contracts_with_base_url_passes_against_mock_runbase_serve(
    server: Server, tmp_path: Path
) -> None:
    junit = tmp_path / "contracts.xml"
    command = [sys.executable, "-m", "pytest", "contracts", "--base-url", f"{server.base}/v1"]
    command += ["--contract-profile", "quick"]  # every contract; in process they run in full
    result = run([*command, "--junitxml", str(junit), *QUIET], cwd=ROOT)
    assert result.returncode == 0, result.stdout[-5000:]
    assert f"Runbase contracts against live server {server.base}/v1" in result.stdout
    outcomes = junit_contracts(junit)
    assert set(outcomes) >= REQUIRED, REQUIRED - set(outcomes)
    assert set(outcomes.values()) == {"passed"}, outcomes
    for name in outcomes:
        assert re.search(rf"{name}\s*│ passed", result.stdout), name


def test_mock_runbase_contract_selects_and_rejects_checks(server: Server, tmp_path: Path) -> None:
    contract = [*serve_command(), "contract"]
    checks = ["--check", "unknown_run_is_run_not_found", "--check", "polling_is_monotonic"]
    result = run([*contract, "--base-url", f"{server.base}/api/v1", *checks, "--profile",
                  "quick"], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 contracts passed, 0 failed, 0 skipped" in result.stdout
    wrong = run([*contract, "--check", "no_such_contract"], cwd=tmp_path)
    assert wrong.returncode == 4
    assert "unknown contract no_such_contract; known:" in wrong.stderr + wrong.stdout


def test_an_installed_wheel_runs_the_suite_away_from_the_source_tree(
    installed_wheel: Path, tmp_path: Path
) -> None:
    site, elsewhere = installed_wheel, tmp_path / "project"  # the wheel's files: test_packaging
    elsewhere.mkdir()  # a user's project, whose pytest settings must not reach the suite
    (elsewhere / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "--no-such-option"\n'
    )
    command = [sys.executable, "-m", "mock_runbase", "contract", "--profile", "quick"]
    result = run(
        [*command, "--check", "unknown_run_is_run_not_found"],
        cwd=elsewhere,
        env={"PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"rootdir: {site / 'mock_runbase' / 'contracts'}" in result.stdout
    assert "1 contracts passed, 0 failed" in result.stdout
