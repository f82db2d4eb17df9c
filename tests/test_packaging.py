"""The wheel carries every module of the four folders and the target profiles (docs/ARCHITECTURE.md: a package left out of pyproject drops out of the wheel)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sources(folder: str, pattern: str = "*.py") -> set[str]:
    return {p.name for p in (ROOT / folder).glob(pattern)}


def test_wheel_contains_all_folders(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
    )
    (wheel,) = tmp_path.glob("edgekit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (("runtimes", "runtimes"), ("exporters", "exporters"), ("targets", "targets"), ("edgekit/cli", "cli")):
        expected = {f"edgekit/{package}/{name}" for name in _sources(folder)}
        assert expected <= names, sorted(expected - names)
    tomls = {f"edgekit/targets/{name}" for name in _sources("targets", "*.toml")}
    assert len(tomls) >= 10 and tomls <= names, sorted(tomls - names)
    truth = {f"edgekit/targets/truth/{p.name}" for p in (ROOT / "targets/truth").glob("*")}  # published points, op costs
    assert len(truth) >= 4 and truth <= names, sorted(truth - names)
    for source in (ROOT / "edgekit").rglob("*.py"):
        module = source.relative_to(ROOT).as_posix()
        assert module in names, f"{module} missing: list its package in pyproject.toml"
    weights = {f"edgekit/models/weights/{p.name}" for p in (ROOT / "edgekit/models/weights").glob("*")} if (ROOT / "edgekit/models/weights").is_dir() else set()
    assert weights <= names, sorted(weights - names)
