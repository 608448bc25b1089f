"""What the ``runbase_mock`` fixture adds to a test suite: 200 tests with it, 200 without.

    python bench/plugin_overhead.py [--tests 200]

Each test with the fixture gets a fresh mock (reset, new key) and makes one create and one
poll over HTTP; the tests without it make no calls. The difference of the two wall times,
minus the HTTP calls themselves, is the fixture's cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WITH_FIXTURE = """
import httpx
import pytest

HTTP = httpx.Client()  # one client, as an app would keep


@pytest.mark.parametrize("n", range({count}))
def test_with_mock(runbase_mock, n):
    headers = {{"Authorization": f"Bearer {{runbase_mock.api_key}}"}}
    body = {{"model": "openai/gpt-image-2", "input": {{"prompt": f"tile {{n}}"}}}}
    run = HTTP.post(f"{{runbase_mock.base_url}}/runs", json=body, headers=headers).json()
    poll = HTTP.get(f"{{runbase_mock.base_url}}/runs/{{run['id']}}", headers=headers)
    assert poll.json()["status"] == "succeeded"
"""

FIXTURE_ONLY = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_fixture_only(runbase_mock, n):
    assert runbase_mock.base_url
"""

WITHOUT = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_without_mock(n):
    assert n >= 0
"""


def timed_run(directory: Path, source: str, count: int) -> float:
    test_file = directory / "test_suite.py"
    test_file.write_text(source.format(count=count))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=200)
    count = parser.parse_args().tests
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        baseline = min(timed_run(directory, WITHOUT, count) for _ in range(3))
        fixture_only = min(timed_run(directory, FIXTURE_ONLY, count) for _ in range(3))
        with_calls = min(timed_run(directory, WITH_FIXTURE, count) for _ in range(3))
    print(f"{count} tests without the fixture:            {baseline:6.2f} s")
    print(f"{count} tests with runbase_mock (no calls):   {fixture_only:6.2f} s")
    print(f"{count} tests with runbase_mock + 2 calls:    {with_calls:6.2f} s")
    added = fixture_only - baseline
    per_test = added / count * 1000
    print(f"fixture overhead: {added:.2f} s for {count} tests ({per_test:.1f} ms a test)")


if __name__ == "__main__":
    main()
