"""Op coverage: which nodes of an exported ONNX graph a target's compute unit cannot run.

Each unit's ``[units.NAME.ops]`` table (targets/ops.py) lists the ONNX op types it runs, from the vendor's
published list. :func:`check_coverage` walks the graph in its (topological) node order and reports every
node that would *fall back* to another unit (the table's ``fallback``) or make the build *fail* (no
fallback). With ``split = "once"`` (the Edge TPU compiler) the first unsupported node and every node
after it fall back, supported or not. ``max_innermost_dims`` flags nodes whose output has more innermost
dimensions larger than 1 than the unit allows (shapes known after ONNX shape inference only).

Example:
    >>> import onnx
    >>> from onnx import helper as h, TensorProto as T
    >>> nodes = [h.make_node("Relu", ["x"], ["a"], name="relu"), h.make_node("Erf", ["a"], ["b"], name="erf"),
    ...          h.make_node("Relu", ["b"], ["y"], name="relu2")]
    >>> graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 8])],
    ...                      [h.make_tensor_value_info("y", T.FLOAT, [1, 8])])
    >>> from edgekit.targets import load_target
    >>> report = check_coverage(h.make_model(graph), load_target("coral"))
    >>> [(n.name, n.op_type, n.action) for n in report.nodes]
    [('erf', 'Erf', 'falls back to cpu'), ('relu2', 'Relu', 'falls back to cpu')]
    >>> print(report.summary())
    coral-edgetpu unit tpu: 2 of 3 nodes fall back to cpu (first: erf (Erf), not in the unit's op list)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekit.runtimes.errors import UsageError

__all__ = ["NodeIssue", "CoverageReport", "check_coverage", "check_nodes", "coverage_units", "coverage_of_file"]


@dataclass(frozen=True)
class NodeIssue:
    """One node the unit will not run: its name, op type, why, and what happens (``action``)."""

    name: str
    op_type: str
    reason: str
    action: str  # "falls back to UNIT" or "fails the build"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "op_type": self.op_type, "reason": self.reason, "action": self.action}


@dataclass(frozen=True)
class CoverageReport:
    """The nodes of one graph a unit cannot run; empty ``nodes`` when it runs them all."""

    target: str
    unit: str
    total_nodes: int
    nodes: tuple[NodeIssue, ...] = ()
    source: str = ""  # the published list the unit's table cites
    checked: bool = True  # False: the unit has no op table (it runs every op as far as edgekit knows)

    @property
    def fails(self) -> tuple[NodeIssue, ...]:
        return tuple(n for n in self.nodes if n.action == "fails the build")

    @property
    def fallback_fraction(self) -> float:
        """The share of the graph's nodes that run elsewhere (0 when all run on the unit)."""
        return (len(self.nodes) - len(self.fails)) / self.total_nodes if self.total_nodes else 0.0

    def summary(self) -> str:
        """One line: what moves or fails, naming the first node."""
        where = f"{self.target} unit {self.unit}"
        if not self.checked:
            return f"{where}: no op list in the profile; all {self.total_nodes} nodes assumed supported"
        if not self.nodes:
            return f"{where}: all {self.total_nodes} nodes supported ({self.source})"
        first = self.nodes[0]
        verb = first.action.replace("falls", "fall").replace("fails", "fail")
        return f"{where}: {len(self.nodes)} of {self.total_nodes} nodes {verb} (first: {first.name} ({first.op_type}), {first.reason})"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "unit": self.unit, "total_nodes": self.total_nodes, "checked": self.checked,
                "source": self.source, "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CoverageReport":
        """The report :meth:`to_json` wrote (a manifest's ``validation.op_coverage`` entry)."""
        nodes = tuple(NodeIssue(n["name"], n["op_type"], n["reason"], n["action"]) for n in data.get("nodes", ()))
        return cls(data["target"], data["unit"], int(data["total_nodes"]), nodes, data.get("source", ""),
                   bool(data.get("checked", True)))


def _innermost_over(model: Any, limit: int) -> dict[str, int]:
    """Node output name -> its rank of dimensions > 1 counted from the innermost, for outputs where a dimension
    outside the ``limit`` innermost ones is larger than 1 (dynamic dimensions count as 1)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort: a graph it cannot type is checked by op type only
        return {}
    over = {}
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in info.type.tensor_type.shape.dim]
        outer = [i for i, size in enumerate(dims[: max(0, len(dims) - limit)]) if size > 1]
        if outer:
            over[info.name] = len(dims) - outer[0]
    return over


def check_coverage(model: Any, target: Any, unit: str | None = None) -> CoverageReport:
    """The nodes of ``model`` (an ``onnx.ModelProto``) that ``target``'s ``unit`` (default: its default unit)
    cannot run, in graph order."""
    nodes = [(node.name or f"{node.op_type}_{i}", node.op_type, tuple(node.output)) for i, node in enumerate(model.graph.node)]
    ops = target.unit(unit or target.default_unit).ops
    over = _innermost_over(model, ops.max_innermost_dims) if ops is not None and ops.max_innermost_dims else {}
    return check_nodes(nodes, target, unit, over)


def check_nodes(nodes: Sequence[tuple[str, str, tuple[str, ...]]], target: Any, unit: str | None = None,
                over: Mapping[str, int] | None = None) -> CoverageReport:
    """:func:`check_coverage` of (name, ONNX op type, output names) triples in graph order; ``over`` maps output
    names to their span of innermost dimensions > 1 where that breaks the unit's ``max_innermost_dims``."""
    compute = target.unit(unit or target.default_unit)
    ops, over = compute.ops, over or {}
    if ops is None:
        return CoverageReport(target.name, compute.name, len(nodes), checked=False)
    action = f"falls back to {ops.fallback}" if ops.fallback else "fails the build"
    issues: list[NodeIssue] = []
    cut: str | None = None  # split "once": the node the graph was cut at
    for name, op_type, outputs in nodes:
        reason = None
        if not ops.runs(op_type):
            reason = "not in the unit's op list"
        elif any(out in over for out in outputs):
            big = max(over[out] for out in outputs if out in over)
            reason = f"output spans {big} innermost dimensions > 1 (the unit allows {ops.max_innermost_dims})"
        elif cut is not None:
            reason = f"after {cut}, where the graph is cut"
        if reason is None:
            continue
        issues.append(NodeIssue(name, op_type, reason, action))
        if ops.split == "once" and cut is None:
            cut = name
    return CoverageReport(target.name, compute.name, len(nodes), tuple(issues), source=ops.source)


def coverage_units(target: Any, unit: str | None = None) -> list[str]:
    """``unit``, else every unit of ``target`` with an op table, else its default unit."""
    return [unit] if unit else [u.name for u in target.units if u.ops is not None] or [target.default_unit]


def coverage_of_file(path: str | Path, target: Any, units: Sequence[str] | None = None) -> list[CoverageReport]:
    """:func:`check_coverage` of a model file for each of ``units`` (default: :func:`coverage_units`): an
    ``.onnx`` graph, or a ``.tflite`` one read through LiteRT (its ops named as their ONNX counterparts)."""
    path = Path(path)
    chosen = list(units) if units else coverage_units(target)
    if path.suffix.lower() == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return [check_coverage(model, target, name) for name in chosen]
    if path.suffix.lower() == ".tflite":
        from .tflite import tflite_stats

        nodes = [(n.name, n.op_type, ()) for n in tflite_stats(path).nodes]
        return [check_nodes(nodes, target, name) for name in chosen]
    raise UsageError(f"{path}: op coverage reads an .onnx or .tflite graph; got {path.suffix or 'no suffix'}")
