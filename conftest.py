"""Root pytest hooks: ``--doctest-modules`` (pyproject.toml) runs every docstring example once, in the
module users import.

pytest imports a file by its folder's name (exporters/onnx.py as ``exporters.onnx``), while the package
maps exporters/, runtimes/ and targets/ into ``edgekit`` (pyproject.toml ``package-dir``): a second
copy of each module would hold second registries and raise ``runtimes.errors.UsageError`` where the
examples expect ``edgekit.runtimes.errors.UsageError``. So each folder name points at the real module.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from tests.layers import package_dirs

ROOT = Path(__file__).resolve().parent
_MAPPED = {folder.name: package for package, folder in package_dirs(ROOT).items() if folder.name != package}


def pytest_collect_file(file_path: Path, parent):  # noqa: ANN001, ANN201 - pytest hook signature
    parts = file_path.relative_to(ROOT).with_suffix("").parts if file_path.is_relative_to(ROOT) else ()
    if file_path.suffix == ".py" and parts and parts[0] in _MAPPED:
        names = [p for p in parts if p != "__init__"]
        real = ".".join([_MAPPED[names[0]], *names[1:]])
        sys.modules.setdefault(".".join(names), importlib.import_module(real))
    return None  # the doctest plugin collects the file
