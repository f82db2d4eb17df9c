"""Memory a model needs to run: its weights plus the peak of simultaneously live activations.

Activations are walked in the graph's (topological) order: a tensor is live from the node that writes
it to the last node that reads it; graph outputs stay live to the end. Runtimes reuse buffers about
this well (onnxruntime's memory pattern planner, TensorRT's allocator), so this is a fair lower bound
for the arena; weights count once at the given precision.

Example:
    >>> import torch, tempfile, pathlib
    >>> from edgekit.exporters.onnx import export_onnx
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"
    >>> net = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    >>> _ = export_onnx(net, (TensorSpec("x", (1, 100)),), (torch.randn(1, 100),), path)
    >>> m = estimate_memory(path)
    >>> m.weight_elems, m.peak_activation_elems
    (5560, 150)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.runtimes.errors import ModelLoadError, require
from edgekit.runtimes.precision import PRECISIONS, bytes_per_element

__all__ = ["MemoryEstimate", "estimate_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    weight_elems: int
    peak_activation_elems: int

    def bytes(self, precision: str = "fp32") -> int:
        """Weights and activations at ``precision`` (int8 keeps activations 8-bit too, as QDQ runs)."""
        return (self.weight_elems + self.peak_activation_elems) * bytes_per_element(precision)

    def megabytes(self, precision: str = "fp32") -> float:
        return self.bytes(precision) / 1e6

    def to_json(self) -> dict:
        return {"weight_elems": self.weight_elems, "peak_activation_elems": self.peak_activation_elems,
                "megabytes": {p: round(self.megabytes(p), 3) for p in PRECISIONS}}


def estimate_memory(path: str | Path) -> MemoryEstimate:
    """Weights and peak live activations (elements, batch 1 for dynamic axes) of an ONNX file."""
    onnx = require("onnx", "export")
    path = Path(path)
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    graph = model.graph
    size: dict[str, int] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        size[value.name] = int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in dims]))
    weights = {init.name: int(np.prod(init.dims)) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            weights[node.output[0]] = int(np.prod(node.attribute[0].t.dims))
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    end = len(graph.node)
    for value in graph.output:
        last_use[value.name] = end
    live = {v.name: size.get(v.name, 0) for v in graph.input if v.name not in weights}
    peak = sum(live.values())
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in weights:
                live[name] = size.get(name, 0)
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if last_use.get(name, -1) <= index:
                del live[name]
    return MemoryEstimate(sum(weights.values()), peak)
