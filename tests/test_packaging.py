"""The wheel carries the spec, so an installed mock works without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("mock_runbase-*.whl")
    return built


def test_wheel_ships_the_spec_byte_for_byte(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("mock_runbase/openapi.yaml") == (ROOT / "openapi.yaml").read_bytes()
        names = archive.namelist()
    assert any(name.endswith("entry_points.txt") for name in names)


def test_installed_wheel_finds_its_spec_without_the_source_tree(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import mock_runbase.spec as s; spec = s.load_spec(); "
        "print(spec.path); print(sorted(spec.catalog.models))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    spec_path, models = result.stdout.splitlines()
    assert Path(spec_path).is_relative_to(site)
    assert "openai/gpt-image-2" in models
