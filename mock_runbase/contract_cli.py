"""``mock-runbase contract``: run the contract suite shipped in the package against a target.

The suite is the ``contracts`` package next to ``mock_runbase`` (the source tree's
``contracts/``, installed by the wheel). It runs under pytest with its own settings only
(``-c`` an empty file), so the configuration of the project it is run from cannot change
what it checks. It needs the ``contract`` extra: ``pip install 'mock-runbase[contract]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["run", "suite_path"]

DISTRIBUTION = "mock-runbase"
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
    """This distribution's own suite: beside the package (a checkout, or an install), else
    wherever its RECORD put it; never some other distribution's ``contracts``."""
    beside = Path(__file__).resolve().parent.parent / "contracts"
    if (beside / "conftest.py").is_file():
        return beside
    for file in metadata.files(DISTRIBUTION) or []:
        if file.as_posix() == "contracts/conftest.py":
            return Path(str(file.locate())).parent
    raise FileNotFoundError(f"{DISTRIBUTION} was installed without its contract suite")


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
