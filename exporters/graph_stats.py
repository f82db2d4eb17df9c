"""Static facts about an ONNX graph: op histogram, parameter count, MACs and elements moved per node.

Dynamic dimensions count as 1 (batch 1). The per-node costs are plain data, so the torch-free
latency models in ``edgekit.targets`` can consume them without importing onnx.

Example:
    >>> import torch, tempfile, pathlib
    >>> from edgekit.exporters.onnx import export_onnx
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "lin.onnx"
    >>> _ = export_onnx(torch.nn.Linear(8, 4), (TensorSpec("x", ("batch", 8)),), (torch.randn(1, 8),), path)
    >>> stats = graph_stats(path)
    >>> stats.macs, stats.params
    (32, 36)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtimes.errors import ModelLoadError, require
from edgekit.targets.opkinds import op_kind

__all__ = ["NodeCost", "GraphStats", "graph_stats"]

@dataclass(frozen=True)
class NodeCost:
    """One node's work: MACs, and elements of weights and activations it touches (precision-free)."""

    name: str
    op_type: str
    kind: str  # see edgekit.targets.opkinds
    macs: int
    weight_elems: int
    activation_elems: int  # inputs read (non-initializer) + outputs written


@dataclass(frozen=True)
class GraphStats:
    ops: dict[str, int]
    params: int
    macs: int
    nodes: tuple[NodeCost, ...]
    opset: int

    def to_json(self) -> dict[str, Any]:
        return {"ops": dict(self.ops), "params": self.params, "macs": self.macs, "nodes": len(self.nodes), "opset": self.opset}


def _dims(value_info) -> tuple[int, ...] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)


def _node_macs(node, shapes: dict[str, tuple[int, ...]], attrs: dict[str, Any]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if node.op_type in ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger"):
        weight_index = 3 if node.op_type == "QLinearConv" else 1
        weight = shapes.get(node.input[weight_index])
        if weight is None:
            return 0
        if node.op_type == "ConvTranspose":
            input_shape = shapes.get(node.input[0])
            return int(np.prod(input_shape)) * int(np.prod(weight[1:])) if input_shape else 0
        return int(np.prod(out)) * int(np.prod(weight[1:]))  # weight[1] is already C_in / group
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a_index = 0
        b_index = 3 if node.op_type == "QLinearMatMul" else 1
        a, b = shapes.get(node.input[a_index]), shapes.get(node.input[b_index])
        if a is None or b is None:
            return 0
        k = a[-2] if node.op_type == "Gemm" and attrs.get("transA", 0) else a[-1]
        return int(np.prod(out)) * int(k)
    return 0


def graph_stats(path: str | Path) -> GraphStats:
    """Shape-infer the ONNX file and count ops, parameters, MACs and bytes moved per node."""
    onnx = require("onnx", "export")
    path = Path(path)
    try:
        model = onnx.load(str(path))
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = _dims(value)
        if dims is not None:
            shapes[value.name] = dims
    initializers: dict[str, int] = {}  # name -> element count
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        initializers[init.name] = int(np.prod(init.dims))
    for node in graph.node:  # Constant nodes carry weights too after constant folding
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            tensor = node.attribute[0].t
            shapes[node.output[0]] = tuple(tensor.dims)
            initializers[node.output[0]] = int(np.prod(tensor.dims))
    params = sum(int(np.prod(init.dims)) for init in graph.initializer)
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight_elems = sum(initializers.get(name, 0) for name in node.input)
        activation_elems = sum(
            int(np.prod(shapes[name]))
            for name in list(node.input) + list(node.output)
            if name and name in shapes and name not in initializers
        )
        input_shape = shapes.get(node.input[0]) if node.input else None
        group = int(attrs.get("group", 1))
        depthwise = group > 1 and input_shape is not None and len(input_shape) > 1 and group == input_shape[1]
        nodes.append(NodeCost(
            node.name or f"{node.op_type}_{index}", node.op_type, op_kind(node.op_type, depthwise),
            _node_macs(node, shapes, attrs), weight_elems, activation_elems,
        ))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    ops = dict(Counter(node.op_type for node in graph.node).most_common())
    return GraphStats(ops, params, sum(n.macs for n in nodes), tuple(nodes), opset)
