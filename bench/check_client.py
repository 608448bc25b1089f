"""How long ``mock-runbase check-client`` takes: 100 examples against the sample clients.

    python bench/check_client.py [--examples 100] [--seeds 1,2,3] [--node]

Runs check-client as a user would (its defaults, plus the shortened poll interval a test
gives its client and ``--min-poll-interval`` to match) once per seed, and prints the wall
time of each run and the median. The sample clients are tests/clients/sample_client.py (and
with --node, tests/clients/sample_client.mjs). No timed assertion anywhere: a report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = {
    "python": [sys.executable, "-m", "tests.clients.sample_client", "--poll-interval", "0.02"],
    "node": ["node", "tests/clients/sample_client.mjs"],
}


def timed(client: list[str], examples: int, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "mock_runbase", "check-client", "--examples", str(examples),
             "--seed", str(seed), "--min-poll-interval", "0.01", "--report", str(report),
             "--", *client],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "POLL_INTERVAL_MS": "20"},
        )  # fmt: skip
        seconds = time.monotonic() - started
        data = json.loads(report.read_text())
    return {"exit": done.returncode, "seconds": round(seconds, 1), "examples": data["examples"],
            "requests": data["requestsJudged"], "kinds": data["plansByKind"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--node", action="store_true", help="also the Node sample client")
    options = parser.parse_args()
    for name in ["python", "node"] if options.node else ["python"]:
        runs = [timed(CLIENTS[name], options.examples, int(s)) for s in options.seeds.split(",")]
        for seed, run in zip(options.seeds.split(","), runs, strict=True):
            print(f"{name} seed {seed}: exit {run['exit']}, {run['examples']} examples, "
                  f"{run['requests']} requests, {run['seconds']} s")  # fmt: skip
        median = statistics.median(float(str(run["seconds"])) for run in runs)
        print(f"{name}: median {median:.1f} s for {options.examples} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
