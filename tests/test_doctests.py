"""The runnable examples in the modules' docstrings stay true: pytest's ``--doctest-modules`` collects
every module of the four source folders (pyproject.toml), no hand-kept list, each in the module users
import (conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.layers import package_dirs, tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_doctests_are_collected_from_every_source_folder():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    folders = {folder.relative_to(ROOT).as_posix() for folder in package_dirs(ROOT).values()}
    assert folders == {"edgekit", "exporters", "runtimes", "targets"}
    assert folders <= set(options["testpaths"])


def test_a_mapped_folder_is_collected_under_its_edgekit_name():
    """runtimes/precision.py's examples run in edgekit.runtimes.precision, not in a second copy."""
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "runtimes/precision.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "runtimes/precision.py::edgekit.runtimes.precision.bytes_per_element" in listing
