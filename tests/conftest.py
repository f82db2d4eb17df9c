from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# Fixed thread counts (as every measurement in edgekit): on a 2-core machine shared with another job,
# torch's default of one thread per core oversubscribes and a 1 s BatchNorm pass takes 30 s.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.fixtures.tiny_models:tiny_cnn` must import from any cwd
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle of the tiny CNN for the host, exported once per test session."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(ExportRequest(out=out, model=ModelRequest("tests.fixtures.tiny_models:tiny_cnn"), measure=MeasureConfig(runs=3)))
    return out
