"""The runnable examples in the public modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "edgekit",
    "edgekit.runtimes",
    "edgekit.runtimes.spec",
    "edgekit.runtimes.session",
    "edgekit.runtimes.bundle",
    "edgekit.runtimes.errors",
    "edgekit.exporters.onnx",
    "edgekit.exporters.graph_stats",
    "edgekit.exporters.formats",
    "edgekit.models.registry",
    "edgekit.models.pt2",
    "edgekit.models.mobilenet",
    "edgekit.targets.measure",
    "edgekit.pipeline",
    "edgekit.profiling",
    "edgekit.calibration_zoo",
    "edgekit.exporters.quantize",
    "edgekit.exporters.accuracy",
    "edgekit.targets.opkinds",
    "edgekit.targets.latency",
    "edgekit.targets.calibrated",
    "edgekit.targets.lut",
    "edgekit.models.ofa.blocks",
    "edgekit.exporters.memory",
    "edgekit.targets.predictor",
    "edgekit.search.latency",
    "edgekit.search.blockwise",
    "edgekit.search.accuracy",
    "edgekit.search.evolution",
    "edgekit.search.select",
    "edgekit.search.family",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
