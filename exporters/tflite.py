"""torch -> TFLite (LiteRT): fp32 through litert-torch (torch.export, no TensorFlow), fp16 and full-int8
variants through ai-edge-quantizer; validation runs the file in LiteRT (:mod:`edgekit.runtimes.litert`).

Layout: the file keeps the torch model's inputs and outputs as they are (NCHW for a torch CNN; litert-torch
inserts the transposes XNNPACK needs inside the graph), or takes image inputs channels-last with ``--layout
nhwc`` (edgekit.models.layout); the manifest's TensorSpecs record them as they are. Shapes are static
at the example's sizes (litert-torch 0.10 fails to lower a dynamic batch through ``Flatten``), with batch
1: the LiteRT session runs a larger batch one sample at a time, so the batch axis stays ``batch`` in the
specs while height and width are fixed. fp16 stores weights as float16 (computation stays float32, as
XNNPACK runs it); int8 is ``static_wi8_ai8`` (int8 weights and activations, int8 input and output
tensors that the session (de)quantizes), calibrated on real samples only: the family's int8 data or
``--calib-data``.

Example:
    >>> import torch, tempfile, pathlib                                        # doctest: +SKIP
    >>> from edgekit.exporters.base import ExportGraph, ExportOptions          # doctest: +SKIP
    >>> from edgekit.runtimes.spec import TensorSpec                           # doctest: +SKIP
    >>> net = torch.nn.Linear(4, 2).eval()                                     # doctest: +SKIP
    >>> graph = ExportGraph("model", net, (TensorSpec("x", ("batch", 4)),), (torch.randn(1, 4),))  # doctest: +SKIP
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.tflite"                  # doctest: +SKIP
    >>> TfliteExporter().export(graph, path, ExportOptions()).outputs[0].shape  # doctest: +SKIP
    ('batch', 2)
"""

from __future__ import annotations

from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import ExportError, ModelLoadError, UsageError, one_line, require
from edgekit.runtimes.spec import TensorSpec
from edgekit.targets.opkinds import op_kind

from .base import Artifact, BaseExporter, ExportGraph, ExportOptions, parity_subject
from .graph_stats import GraphStats, NodeCost
from .onnx import _quiet
from .parity import ValidationReport, check_parity, output_names_of, run_example

__all__ = ["TfliteExporter", "tflite_stats", "TFLITE_OPS"]

Feeds = Mapping[str, np.ndarray]

# TFLite builtin op -> the ONNX op type of the same work, so the latency models' op kinds apply.
TFLITE_OPS = {
    "CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "TRANSPOSE_CONV": "ConvTranspose", "FULLY_CONNECTED": "Gemm",
    "BATCH_MATMUL": "MatMul", "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "RELU": "Relu",
    "RELU6": "Clip", "RELU_N1_TO_1": "Clip", "LEAKY_RELU": "LeakyRelu", "PRELU": "PRelu", "HARD_SWISH": "HardSwish",
    "LOGISTIC": "Sigmoid", "TANH": "Tanh", "GELU": "Gelu", "EXP": "Exp", "SQRT": "Sqrt", "RSQRT": "Sqrt",
    "POW": "Pow", "MAXIMUM": "Max", "MINIMUM": "Min", "QUANTIZE": "QuantizeLinear", "DEQUANTIZE": "DequantizeLinear",
    "CAST": "Cast", "MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "AVERAGE_POOL_2D": "AveragePool",
    "MAX_POOL_2D": "MaxPool", "SOFTMAX": "Softmax", "TRANSPOSE": "Transpose", "CONCATENATION": "Concat",
    "PAD": "Pad", "PADV2": "Pad", "SLICE": "Slice", "STRIDED_SLICE": "Slice", "GATHER": "Gather",
    "RESIZE_BILINEAR": "Resize", "RESIZE_NEAREST_NEIGHBOR": "Resize", "RESHAPE": "Reshape", "SQUEEZE": "Squeeze",
    "EXPAND_DIMS": "Unsqueeze",
}

_DEFAULT_CALIBRATION_NOTE = "int8 TFLite is calibrated on real samples"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _static_specs(graph: ExportGraph) -> tuple[TensorSpec, ...]:
    """The graph's input specs with every named axis but ``batch`` fixed at the example's size."""
    specs = []
    for spec, example in zip(graph.inputs, graph.example_inputs):
        shape = tuple(dim if not isinstance(dim, str) or dim == "batch" else int(example.shape[axis])
                      for axis, dim in enumerate(spec.shape))
        specs.append(TensorSpec(spec.name, shape, spec.dtype))
    return tuple(specs)


def _batch_one(graph: ExportGraph) -> tuple[Any, ...]:
    """The example inputs cut to one sample on the axes named ``batch``."""
    cut = []
    for spec, example in zip(graph.inputs, graph.example_inputs):
        axis = next((a for a, name in spec.dynamic_axes.items() if name == "batch"), None)
        cut.append(example.narrow(axis, 0, 1) if axis is not None else example)
    return tuple(cut)


class TfliteExporter(BaseExporter):
    """The TFLite format's exporter (see the module docstring)."""

    format = "tflite"
    needs_int8_data = True  # no random calibration: the error names --calib-data

    def describe(self, options: ExportOptions) -> str:
        return "litert-torch, static shapes"

    def export(self, graph: ExportGraph, path: Path, options: ExportOptions) -> Artifact:
        require("torch", "tflite")
        with _quiet():  # its import logs from native code
            litert_torch = require("litert_torch", "tflite")
        path = Path(path)
        graph.module.eval()
        example = _batch_one(graph)
        names = [spec.name for spec in graph.inputs]
        own_names = output_names_of(run_example(graph.module, names, example))
        output_names = tuple(graph.output_names or own_names)
        if len(output_names) != len(own_names):
            raise ExportError(f"output names {list(output_names)}: the model returns {len(own_names)} outputs")
        try:
            with _quiet():
                litert_torch.convert(graph.module, example).export(str(path))
        except Exception as exc:
            raise ExportError(f"TFLite conversion (litert-torch) failed: {one_line(exc)}") from exc
        from edgekit.runtimes.litert import LiteRtSession

        session = LiteRtSession(path)
        outputs = tuple(TensorSpec(name, spec.shape, spec.dtype) for name, spec in zip(output_names, session.outputs))
        if len(outputs) != len(output_names):
            raise ExportError(f"{path}: the file has {len(session.outputs)} outputs, the model {len(output_names)}")
        provenance = {"exporter": f"litert-torch {_version('litert-torch')}",
                      "shapes": "static; batch 1, larger batches run one sample at a time"}
        return Artifact(path, _static_specs(graph), outputs, provenance)

    def validate(self, artifact: Artifact, graph: ExportGraph, *, atol: float, rtol: float) -> ValidationReport:
        """Parity with torch at the trial sizes the static file takes (the batch may change, nothing else)."""
        base = graph.trials[0]
        trials = tuple(t for t in graph.trials if all(t[k] == v for k, v in base.items() if k != "batch"))
        session = self.validation_session(artifact.path, artifact.inputs)
        return check_parity(session, graph.module, artifact.inputs, feeds=graph.validation_feeds, trials=trials,
                            atol=atol, rtol=rtol, where=parity_subject(self.format, graph.name))

    def graph_stats(self, path: Path) -> GraphStats:
        return tflite_stats(path)

    def write_variant(self, fp32_path: Path, out_path: Path, precision: str, inputs: Sequence[TensorSpec],
                      int8_calibration: Sequence[Feeds] = ()) -> dict[str, Any]:
        with _quiet():
            quantizer = require("ai_edge_quantizer.quantizer", "tflite")
            recipes = require("ai_edge_quantizer.recipe", "tflite")
            manager_module = require("ai_edge_quantizer.recipe_manager", "tflite")
        if precision == "fp16":
            manager = manager_module.RecipeManager()
            manager.add_weight_only_config(regex=".*", operation_name=recipes.TFLOperationName.ALL_SUPPORTED,
                                           num_bits=16, algorithm_key=recipes.AlgorithmName.FLOAT_CASTING)
            recipe, method = manager.get_quantization_recipe(), "ai-edge-quantizer weight-only float casting to fp16"
        elif precision == "int8":
            if not int8_calibration:
                raise UsageError(f"--precision int8: {_DEFAULT_CALIBRATION_NOTE}; pass --calib-data FILE.npy")
            recipe, method = recipes.static_wi8_ai8(), "ai-edge-quantizer static_wi8_ai8 (int8 weights, activations, I/O)"
        else:
            raise ExportError(f"--precision {precision}: the TFLite exporter writes fp16 and int8 variants of an fp32 file")
        try:
            with _quiet():
                job = quantizer.Quantizer(str(fp32_path), recipe)
                calibration = None
                if precision == "int8":
                    calibration = job.calibrate({"serving_default": _signature_feeds(fp32_path, inputs, int8_calibration)})
                result = job.quantize(calibration, enable_progress_report=False)
        except Exception as exc:
            raise ExportError(f"{fp32_path}: {precision} quantization (ai-edge-quantizer) failed: {one_line(exc)}") from exc
        Path(out_path).write_bytes(result.quantized_model)
        return {"method": method, "quantizer": f"ai-edge-quantizer {_version('ai-edge-quantizer')}"}


def _signature_feeds(path: Path, inputs: Sequence[TensorSpec], samples: Sequence[Feeds]) -> list[dict[str, np.ndarray]]:
    """Calibration samples keyed by the file's signature names, one sample each (a batch is split)."""
    from edgekit.runtimes.litert import LiteRtSession

    file_names = [spec.name for spec in LiteRtSession(path).inputs]
    feeds = []
    for sample in samples:
        missing = [spec.name for spec in inputs if spec.name not in sample]
        if missing:
            raise UsageError(f"int8 calibration sample: missing input {missing[0]!r} (inputs {[s.name for s in inputs]})")
        arrays = [np.asarray(sample[spec.name], np.float32) for spec in inputs]
        for i in range(arrays[0].shape[0]):
            feeds.append({name: a[i : i + 1] for name, a in zip(file_names, arrays)})
    return feeds


def tflite_stats(path: str | Path) -> GraphStats:
    """Op histogram, parameters and MACs of a .tflite file, each op named as its ONNX counterpart
    (:data:`TFLITE_OPS`) so the latency models read it like an ONNX graph."""
    from edgekit.runtimes.litert import LiteRtSession

    path = Path(path)
    try:
        interpreter = LiteRtSession(path, xnnpack=False).raw  # the graph as written, not XNNPACK's DELEGATE nodes
        ops = interpreter._get_ops_details()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    except (AttributeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the TFLite graph ({one_line(exc)})") from exc
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    constant = {i for i in tensors if i not in produced and i not in graph_inputs}

    def elems(index: int) -> int:
        return int(np.prod(tensors[index]["shape"])) if index in tensors else 0

    nodes, params = [], sum(elems(i) for i in constant)
    for op in ops:
        name = op["op_name"]
        onnx_op = TFLITE_OPS.get(name, name.title().replace("_", ""))
        ins = [int(i) for i in op["inputs"] if i >= 0]
        outs = [int(i) for i in op["outputs"]]
        out_elems = sum(elems(i) for i in outs[:1])
        weight = tensors[ins[1]]["shape"] if len(ins) > 1 and ins[1] in tensors else ()
        macs = 0
        if name in ("CONV_2D", "FULLY_CONNECTED") and len(weight):
            macs = out_elems * int(np.prod(weight[1:]))
        elif name == "DEPTHWISE_CONV_2D" and len(weight) == 4:
            macs = out_elems * int(weight[1] * weight[2])
        elif name == "BATCH_MATMUL" and ins:
            macs = out_elems * int(tensors[ins[0]]["shape"][-1])
        nodes.append(NodeCost(f"{name}_{op['index']}", onnx_op, op_kind(onnx_op, name == "DEPTHWISE_CONV_2D"), macs,
                              sum(elems(i) for i in ins if i in constant),
                              sum(elems(i) for i in ins + outs if i not in constant)))
    counts = dict(Counter(node.op_type for node in nodes).most_common())
    return GraphStats(counts, params, sum(n.macs for n in nodes), tuple(nodes), 0)
