"""The README's catalog table is the spec's, as ``scripts/catalog_table.py`` prints it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_shows_the_catalog_of_the_spec() -> None:
    printed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "catalog_table.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed.count("\n") >= 16  # a header, a rule and a row per model
    assert printed in (ROOT / "README.md").read_text(), (
        "README.md's models table is stale: paste `python scripts/catalog_table.py`"
    )
