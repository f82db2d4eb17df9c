from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.fixtures.tiny_models:tiny_cnn` must import from any cwd
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle of the tiny CNN for the host, exported once per test session."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(ExportRequest(out=out, model=ModelRequest("tests.fixtures.tiny_models:tiny_cnn"), measure_runs=3))
    return out
