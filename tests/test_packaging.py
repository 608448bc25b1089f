"""The wheel carries the spec and the contract suite, so an installed mock works without the
source tree; the suite ships inside the package (``mock_runbase/contracts``), never as a
top-level ``contracts`` (an unrelated project's name on PyPI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from mock_runbase.contract_cli import suite_path

ROOT = Path(__file__).resolve().parent.parent
SUITE_IN_WHEEL = "mock_runbase/contracts/"
PROBE_SUITE = "from mock_runbase.contract_cli import suite_path; print(suite_path())"


def python_in(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code`` that imports mock_runbase from ``site``, not from the source tree."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )


def test_wheel_ships_both_documents_byte_for_byte(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for document in ("openapi.yaml", "mock-openapi.yaml"):
            assert archive.read(f"mock_runbase/{document}") == (ROOT / document).read_bytes()
        names = archive.namelist()
    assert any(name.endswith("entry_points.txt") for name in names)


def test_wheel_ships_the_suite_inside_the_package_and_no_top_level_contracts(
    wheel: Path,
) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert "contracts" not in top_level, sorted(n for n in names if n.startswith("contracts/"))
    assert {top for top in top_level if not top.endswith(".dist-info")} == {"mock_runbase"}
    suite = {name for name in names if name.startswith(SUITE_IN_WHEEL)}
    assert f"{SUITE_IN_WHEEL}conftest.py" in suite
    assert suite == {f"{SUITE_IN_WHEEL}{p.name}" for p in (ROOT / "contracts").glob("*.py")}
    assert not [name for name in names if "__pycache__" in name]


def test_installed_wheel_finds_both_documents_without_the_source_tree(
    installed_wheel: Path, tmp_path: Path
) -> None:
    probe = (
        "import mock_runbase.spec as s, mock_runbase.control_spec as c; spec = s.load_spec(); "
        "control = c.load_control_spec(); "
        "print(spec.path); print(sorted(spec.catalog.models)); print(control.path); "
        "print(sorted(control.document['components']['schemas']))"
    )
    result = python_in(installed_wheel, probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spec_path, models, control_path, schemas = result.stdout.splitlines()
    assert Path(spec_path).is_relative_to(installed_wheel)
    assert "openai/gpt-image-2" in models
    assert Path(control_path).is_relative_to(installed_wheel)
    assert "'Error'" in schemas  # bundled from the packaged openapi.yaml beside it


def test_installed_wheel_finds_its_suite_inside_the_package(
    installed_wheel: Path, tmp_path: Path
) -> None:
    result = python_in(installed_wheel, PROBE_SUITE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == installed_wheel / "mock_runbase" / "contracts"


def test_installed_wheel_never_takes_another_distributions_contracts(
    installed_wheel: Path, tmp_path: Path
) -> None:
    site = shutil.copytree(installed_wheel, tmp_path / "site")
    shutil.rmtree(site / "mock_runbase" / "contracts")  # a broken install of ours...
    (site / "contracts").mkdir()  # ...beside the unrelated PyPI project `contracts`
    (site / "contracts" / "__init__.py").write_text("")
    (site / "contracts" / "conftest.py").write_text("")
    result = python_in(site, PROBE_SUITE, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "mock-runbase was installed without its contract suite" in result.stderr


def test_a_checkout_finds_the_repository_suite() -> None:
    assert suite_path() == ROOT / "contracts"
