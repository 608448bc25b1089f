"""``mock-runbase contract``: run the contract suite shipped in the package against a target.

The suite is the source tree's top-level ``contracts/``; the wheel ships it inside the package,
as ``mock_runbase/contracts/`` (never as a top-level ``contracts``, another project's name on
PyPI). It runs under pytest with its own settings only (``-c`` an empty file), so the
configuration of the project it is run from cannot change what it checks. It needs the
``contract`` extra: ``pip install 'mock-runbase[contract]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

__all__ = ["run", "suite_path"]

DISTRIBUTION = "mock-runbase"
SUITE = "contracts"
NO_TESTS_COLLECTED = 5
EXTRA_HINT = "mock-runbase contract needs its extra: pip install 'mock-runbase[contract]'"
PASSED_THROUGH = {  # option of `mock-runbase contract` -> option of the suite
    "base_url": "--base-url",
    "app": "--app",
    "max_spend_usd": "--max-spend-usd",
    "api_key": "--api-key",
    "other_api_key": "--other-api-key",
    "profile": "--contract-profile",
    "spec": "--contract-spec",
    "admin_token": "--mock-admin-token",
    "run_timeout": "--run-timeout",
    "junitxml": "--junitxml",
}


def suite_path() -> Path:
    """This distribution's own suite: ``mock_runbase/contracts`` in an installed wheel, else the
    ``contracts/`` of the source tree this package is imported from (a checkout, an editable
    install). Never some other distribution's ``contracts``: a folder beside the package counts
    only when that folder's parent is this project's source tree."""
    package = Path(__file__).resolve().parent
    if (package / SUITE / "conftest.py").is_file():
        return package / SUITE
    if is_source_tree(package.parent) and (package.parent / SUITE / "conftest.py").is_file():
        return package.parent / SUITE
    raise FileNotFoundError(f"{DISTRIBUTION} was installed without its contract suite")


def is_source_tree(root: Path) -> bool:
    """Whether ``root`` is a checkout of this project: its ``pyproject.toml`` names it."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == DISTRIBUTION


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    suite = suite_path()
    argv = [str(suite), "-c", os.devnull, "--rootdir", str(suite), "-p", "no:cacheprovider"]
    argv.append("--assert=plain")  # contracts explain their own failures; start faster
    for name, option in PASSED_THROUGH.items():
        value = getattr(args, name, None)
        if value is not None:
            argv += [option, str(value)]
    if args.live:
        argv.append("--live")
    if args.no_rate_limit:
        argv.append("--no-rate-limit")
    for check in args.check or []:
        argv += ["--check", check]
    if args.list:
        argv += ["--list-checks", "-q"]
    extra = list(args.pytest_args or [])
    return argv + (extra[1:] if extra[:1] == ["--"] else extra)


def run(args: argparse.Namespace) -> int:
    try:
        import hypothesis  # noqa: F401
        import pytest
        import rich  # noqa: F401
        import schemathesis  # noqa: F401
    except ImportError as missing:
        print(f"{EXTRA_HINT} ({missing.name} is missing)", file=sys.stderr)
        return 2
    try:
        argv = pytest_arguments(args)
    except FileNotFoundError as error:
        print(f"mock-runbase contract: {error}", file=sys.stderr)
        return 2
    code = int(pytest.main(argv))
    if args.list and code == NO_TESTS_COLLECTED:
        return 0
    return code
