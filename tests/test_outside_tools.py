"""The tools people point at an OpenAPI document accept both of ours, as they are.

- schemathesis' own CLI, every check and every phase, against a ``mock-runbase serve``
  process: ``openapi.yaml`` under ``/v1`` and ``/api/v1``, ``mock-openapi.yaml`` at the root;
- a client generated from ``openapi.yaml`` by openapi-python-client drives the mock;
- openapi-spec-validator and Redocly CLI's lint report nothing on either document.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate
from PIL import Image

from mock_runbase.control_spec import default_control_path, load_control_spec
from mock_runbase.spec import default_spec_path
from tests.served import Server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY = "sk-outside-tools"
REDOCLY_VERSION = "2.77.0"  # the last line of Redocly CLI 2 that runs on Node.js 20
TOOL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mock-runbase"


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


@pytest.fixture(scope="module")
def served() -> Iterator[Server]:
    """A mock as a user starts it for schemathesis: fast runs on the real clock."""
    running = Server("--timing", "fast", "--no-rate-limit", "--balance-usd", "1000000")
    yield running
    running.stop()


@pytest.fixture
def virtual() -> Iterator[Server]:
    """A mock of its own on a virtual clock (the clock calls then work, runs move on demand)."""
    running = Server("--clock", "virtual", "--no-rate-limit")
    yield running
    running.stop()


def schemathesis_cli(
    workdir: Path, document: Path, url: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``st run`` as a user runs it: all checks, all phases, a fixed seed for CI (in
    ``workdir``, where it keeps its ``.schemathesis`` folder)."""
    command = [tool("st"), "run", str(document), "--url", url, "--checks", "all"]
    command += ["--phases", "examples,coverage,fuzzing,stateful", "--seed", "1", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=workdir)


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_schemathesis_cli_finds_nothing_in_runbases_api(
    served: Server, prefix: str, tmp_path: Path
) -> None:
    auth = ("-H", f"Authorization: Bearer {KEY}")
    result = schemathesis_cli(tmp_path, default_spec_path(), served.base + prefix, *auth)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "Authentication failed" not in result.stdout  # the checks reached the mock's logic


def test_schemathesis_cli_finds_nothing_in_the_mocks_own_api(
    virtual: Server, tmp_path: Path
) -> None:
    for n in range(3):  # runs for the control calls' links to reach
        created = httpx.post(
            f"{virtual.base}/v1/runs",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "openai/gpt-image-2", "input": {"prompt": f"seed {n}"}},
        )
        assert created.status_code == 200, created.text
    # Fewer examples than the default 100 an operation: the control API has 32 operations
    # (95 s at the default); tests/test_schemathesis.py explores it further in process.
    result = schemathesis_cli(
        tmp_path, default_control_path(), virtual.base, "--max-examples", "30"
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout[result.stdout.rindex("SUMMARY") :]
    assert "Failures:" not in summary and "Errors:" not in summary, summary
    # What it can only warn about: /_mock/account needs a key, which this run does not send,
    # and no operation of this document creates the runs and files that others link to.
    warnings = re.findall(r"⚠️ (.+?):", summary)
    assert set(warnings) <= {"Authentication failed", "Missing test data"}, summary


# --- a generated client ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """``openapi-python-client generate`` over ``openapi.yaml``, imported as a package."""
    out = tmp_path_factory.mktemp("generated")
    result = subprocess.run(
        [
            tool("openapi-python-client"),
            *("generate", "--path", str(default_spec_path()), "--meta", "none"),
            *("--output-path", str(out / "runbase_client")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing of the spec may be dropped: the generator warns when it cannot use a part.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("runbase_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "runbase_client"]:
            del sys.modules[name]


def client_parts(package: ModuleType) -> dict[str, Any]:
    models = importlib.import_module(f"{package.__name__}.models")
    runs = importlib.import_module(f"{package.__name__}.api.runs")
    create = importlib.import_module(f"{runs.__name__}.create_run")
    get = importlib.import_module(f"{runs.__name__}.get_run")
    return {"models": models, "create": create, "get": get}


def test_a_generated_client_has_no_operation_of_the_mocks_own(generated: ModuleType) -> None:
    api = Path(generated.__file__ or "").parent / "api"
    modules = sorted(p.stem for p in api.rglob("*.py") if p.stem != "__init__")
    assert modules == ["create_run", "get_run"]


def gpt_image_2(models: ModuleType, prompt: str, ratio: str, resolution: str) -> Any:
    """A create request built from the generated models alone."""
    return models.GptImage2RunRequest(
        model="openai/gpt-image-2",
        input_=models.GptImage2Input(
            prompt=prompt,
            aspect_ratio=models.GptImage2InputAspectRatio(ratio),
            resolution=models.GptImage2InputResolution(resolution),
        ),
    )


def test_a_generated_client_drives_the_mock(generated: ModuleType, virtual: Server) -> None:
    parts = client_parts(generated)
    models, create, get = parts["models"], parts["create"], parts["get"]
    client = generated.AuthenticatedClient(base_url=f"{virtual.base}/v1", token=KEY)
    request = gpt_image_2(models, "a lighthouse at dawn", "16:9", "2K")
    created = create.sync_detailed(client=client, body=request)
    assert created.status_code == 200
    run = created.parsed
    assert isinstance(run, models.Run)
    assert (run.status, run.cost_usd, run.model) == (
        models.RunStatus.PENDING,
        70000,
        "openai/gpt-image-2",
    )
    statuses = [run.status]
    while statuses[-1] not in (models.RunStatus.SUCCEEDED, models.RunStatus.FAILED):
        virtual.advance(1)
        polled = get.sync(run.id, client=client)
        assert isinstance(polled, models.Run)
        if polled.status != statuses[-1]:
            statuses.append(polled.status)
    assert statuses == [
        models.RunStatus.PENDING,
        models.RunStatus.PROCESSING,
        models.RunStatus.SUCCEEDED,
    ]
    [url] = polled.output.urls
    download = httpx.get(url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(download.content)) as image:
        assert image.size == (2048, 1152)


def test_a_generated_client_parses_a_400_and_a_402(generated: ModuleType, virtual: Server) -> None:
    parts = client_parts(generated)
    models, create = parts["models"], parts["create"]
    poor = "sk-outside-tools-poor"
    client = generated.AuthenticatedClient(base_url=f"{virtual.base}/api/v1", token=poor)

    # The generated models cannot say "4K only with the wide ratios": the mock does.
    wrong = gpt_image_2(models, "too big", "1:1", "4K")
    rejected = create.sync_detailed(client=client, body=wrong)
    assert rejected.status_code == 400
    assert isinstance(rejected.parsed, models.Error)
    assert rejected.parsed.error.code == "invalid_input"
    assert "input.aspect_ratio" in rejected.parsed.error.message

    mock = virtual.base
    account = httpx.get(f"{mock}/_mock/account", headers={"Authorization": f"Bearer {poor}"})
    name = account.json()["account"]
    emptied = httpx.put(f"{mock}/_mock/accounts/{name}", json={"balanceUsd": 10000})
    assert emptied.status_code == 200, emptied.text
    fine = models.GptImage2RunRequest(
        model="openai/gpt-image-2", input_=models.GptImage2Input(prompt="one cent is not enough")
    )
    refused = create.sync_detailed(client=client, body=fine)
    assert refused.status_code == 402
    assert isinstance(refused.parsed, models.Error)
    assert refused.parsed.error.code == "insufficient_balance"
    assert "50000" in refused.parsed.error.message  # what the run costs


# --- validators and linters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [default_spec_path(), default_control_path()], ids=lambda p: p.name
)
def test_openapi_spec_validator_accepts_the_file(path: Path) -> None:
    validate(yaml.safe_load(path.read_text()), base_uri=path.resolve().as_uri())


def test_openapi_spec_validator_accepts_the_served_bundle() -> None:
    validate(load_control_spec().document)


def redocly() -> str:
    """Redocly CLI from the npm registry, installed once into a cache directory."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is needed for Redocly CLI's lint under CI (apt-get install npm)")
        pytest.skip("npm is not installed: Redocly CLI's lint needs Node.js and npm")
    prefix = TOOL_CACHE / f"redocly-cli-{REDOCLY_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "redocly"
    if not binary.exists():
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--silent",
                f"@redocly/cli@{REDOCLY_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return str(binary)


def test_redocly_lint_reports_nothing_on_either_document() -> None:
    """``redocly.yaml`` lists both documents and the recommended rules (with its reasons for
    the few it changes); not one error or warning may remain."""
    result = subprocess.run(
        [redocly(), "lint", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    reports = [json.loads(part) for part in split_json_objects(result.stdout)]
    assert len(reports) == 2, result.stdout + result.stderr
    problems = [p for report in reports for p in report["problems"]]
    assert problems == [], json.dumps(problems, indent=1)[:6000]
    assert result.returncode == 0, result.stderr


def split_json_objects(text: str) -> list[str]:
    """Redocly prints one JSON object per document, back to back."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    text = text.strip()
    while index < len(text):
        _, end = decoder.raw_decode(text, index)
        found.append(text[index:end])
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return found
