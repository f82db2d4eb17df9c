"""``--layout nhwc``: a model's image inputs taken channels-last (N, H, W, C), as camera frames and most
TFLite pipelines hand them over, with the transpose to the model's NCHW inside the exported graph.

Every image input (a 4-D float input) of every graph is wrapped; the specs, example inputs, validation
feeds and the family's data (int8 calibration, held-out samples, the timed feeds) are transposed with it,
so parity, accuracy and timing run on exactly what the device will feed. Outputs keep the model's layout.
A 20-line torch wrapper instead of litert-torch's ``to_channel_last_io``: that one ships only with the
TFLite extra, and the ONNX path takes the same option.

Example:
    >>> from edgekit.models.registry import ModelRequest, resolve_model
    >>> source = channels_last(resolve_model(ModelRequest("mobilenet-v3-small")))
    >>> source.graph.inputs[0].shape, source.provenance["layout"]
    (('batch', 224, 224, 3), 'NHWC inputs (input), transposed to NCHW inside the graph; outputs as the model returns them')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

from .source import ModelSource

__all__ = ["LAYOUTS", "channels_last"]

LAYOUTS = ("nchw", "nhwc")


class ChannelsLastInputs(nn.Module):
    """``module`` taking its inputs at ``positions`` as (N, H, W, C)."""

    def __init__(self, module: nn.Module, positions: tuple[int, ...]) -> None:
        super().__init__()
        self.module, self.positions = module, positions

    def forward(self, *args):
        return self.module(*(a.permute(0, 3, 1, 2) if i in self.positions else a for i, a in enumerate(args)))


def _image_inputs(graph: ExportGraph) -> tuple[int, ...]:
    return tuple(i for i, spec in enumerate(graph.inputs) if len(spec.shape) == 4 and spec.dtype.startswith("float"))


def _nhwc_spec(spec: TensorSpec) -> TensorSpec:
    n, c, h, w = spec.shape
    return TensorSpec(spec.name, (n, h, w, c), spec.dtype)


def _feeds(names: frozenset[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def convert(feed: Mapping[str, Any]) -> dict[str, Any]:
        return {k: np.ascontiguousarray(np.moveaxis(np.asarray(v), 1, -1)) if k in names else v for k, v in feed.items()}

    return convert


def _graph(graph: ExportGraph) -> tuple[ExportGraph, frozenset[str]]:
    positions = _image_inputs(graph)
    names = frozenset(graph.inputs[i].name for i in positions)
    convert = _feeds(names)
    return replace(
        graph,
        module=ChannelsLastInputs(graph.module, positions).eval(),
        inputs=tuple(_nhwc_spec(s) if i in positions else s for i, s in enumerate(graph.inputs)),
        example_inputs=tuple(t.permute(0, 2, 3, 1).contiguous() if i in positions else t
                             for i, t in enumerate(graph.example_inputs)),
        validation_feeds=None if graph.validation_feeds is None else tuple(convert(f) for f in graph.validation_feeds),
    ), names


def channels_last(source: ModelSource) -> ModelSource:
    """``source`` with its image inputs channels-last (see the module docstring); UsageError for a model without
    a 4-D float input, or of several graphs."""
    if not source.single_graph:
        raise UsageError(f"--layout nhwc: {source.name} has graphs {', '.join(source.graphs)}; the layout applies to "
                         "one-graph image models")
    (name, graph), = source.graphs.items()
    if not _image_inputs(graph):
        shapes = ", ".join(f"{s.name} {s.shape_str()} {s.dtype}" for s in graph.inputs)
        raise UsageError(f"--layout nhwc: {source.name} has no image input (a 4-D float tensor); its inputs: {shapes}")
    new_graph, names = _graph(graph)
    convert = _feeds(names)
    data = source.data
    calibration, held_out = data.int8_calibration, data.held_out
    data = replace(data,
                   int8_calibration=None if calibration is None else (lambda n: [convert(f) for f in calibration(n)]),
                   held_out=None if held_out is None else (lambda: _held_out(held_out(), convert)))
    timing = None if source.timing is None else replace(source.timing, feeds=convert(source.timing.feeds))
    note = f"NHWC inputs ({', '.join(sorted(names))}), transposed to NCHW inside the graph; outputs as the model returns them"
    return replace(source, graphs={name: new_graph}, data=data, timing=timing,
                   provenance={**source.provenance, "layout": note})


def _held_out(pair: tuple[list, Any], convert) -> tuple[list, Any]:
    feeds, labels = pair
    return [convert(f) for f in feeds], labels

