"""Write the op costs of the reference models (edgekit.models.reference) at the input sizes the published
points use: each model exported to ONNX and counted by exporters.graph_stats, summed per op kind.

The fit of published calibrations (edgekit.targets.published) reads the result, so it needs no torch:

    python -m edgekit.tools.reference_costs targets/truth/opcosts.json
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import torch

from edgekit.exporters.graph_stats import graph_stats
from edgekit.exporters.onnx import export_onnx
from edgekit.models.reference import REFERENCE_MODELS
from edgekit.runtimes.spec import TensorSpec
from edgekit.targets.truth import load_points, published_path

__all__ = ["reference_costs"]


def reference_costs(model: str, resolution: int) -> dict:
    """Per op kind: ops, MACs, weight and activation elements of ``model`` at ``resolution`` (batch 1); and
    every node as ``[kind, macs, weight_elems, activation_elems]`` (for the roofline, which works per op)."""
    net = REFERENCE_MODELS[model].build().eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        shape = (1, 3, resolution, resolution)
        export_onnx(net, (TensorSpec("x", shape),), (torch.zeros(shape),), path)
        stats = graph_stats(path)
    kinds: dict[str, dict[str, int]] = {}
    for node in stats.nodes:
        row = kinds.setdefault(node.kind, {"ops": 0, "macs": 0, "weight_elems": 0, "activation_elems": 0})
        row["ops"] += 1
        row["macs"] += node.macs
        row["weight_elems"] += node.weight_elems
        row["activation_elems"] += node.activation_elems
    nodes = [[n.kind, n.macs, n.weight_elems, n.activation_elems] for n in stats.nodes]
    return {"params": stats.params, "macs": stats.macs, "kinds": dict(sorted(kinds.items())), "nodes": nodes}


def main(argv: list[str]) -> None:
    points = load_points(published_path())
    every = [*points.comparable, *(point for point, _ in points.apart)]
    wanted = sorted({(p.model, p.resolution) for p in every if p.model in REFERENCE_MODELS})
    costs = {f"{model}@{resolution}": reference_costs(model, resolution) for model, resolution in wanted}
    text = json.dumps(costs, indent=1, sort_keys=True)
    text = re.sub(r"\[\s+(\"\w+\"),\s+(\d+),\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2, \3, \4]", text)  # a node a line
    Path(argv[0]).write_text(text + "\n")
    print(f"{len(costs)} model/size pairs: {', '.join(costs)}")


if __name__ == "__main__":
    main(sys.argv[1:])
