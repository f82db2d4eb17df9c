"""The TensorRT build kit: what a Jetson needs to turn the bundle's ONNX into an engine on the device.

TensorRT engines are specific to the GPU model and the TensorRT version, and TensorRT cannot be installed
on the export host, so the bundle carries a TensorRT-friendly ONNX (opset 17; int8 as symmetric QDQ, zero
points 0, as TensorRT's parser requires; fp16 weights and compute with fp32 I/O) and a kit: ``tensorrt.json``
(the build plan), ``build_engine.sh`` (trtexec; TensorRT 10 flags or the strongly typed TensorRT 11 form,
chosen from the installed trtexec's version at run time), ``build_engine.py`` (the TensorRT Python API;
builds, validates against onnxruntime, records the engine with its TensorRT version and GPU name in the
bundle) and ``TENSORRT.md`` (how to build and validate on the device).

Example:
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> from edgekit.targets import load_target
    >>> plan = plan_build(load_target("jetson-agx-orin"), "dla0", "int8", [TensorSpec("x", ("batch", 3, 8, 8))], {})
    >>> plan.dla_core, plan.profiles["x"]["max"], trtexec_flags(plan, 10)
    (0, [1, 3, 8, 8], ['--int8', '--fp16', '--useDLACore=0', '--allowGPUFallback'])
    >>> trtexec_flags(plan, 11)
    ['--stronglyTyped', '--useDLACore=0', '--allowGPUFallback']
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import ExportError, UsageError
from edgekit.runtimes.spec import TensorSpec

__all__ = ["BuildPlan", "plan_build", "trtexec_flags", "shape_flags", "build_script", "kit_readme",
           "symmetric_qdq", "has_2to4_sparsity", "write_tensorrt_kit", "write_tensorrt_graph_kits", "KIT_FILES"]

KIT_FILES = ("build_engine.sh", "build_engine.py", "tensorrt.json", "TENSORRT.md")
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
DYNAMIC_MAX = 8  # a dynamic axis's profile maximum as a multiple of its example size (the opt shape)
WORKSPACE_MB = 1024  # builder workspace; Jetson boards share memory with the CPU, so it stays modest
MAX_REL_ERROR = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.1}  # engine vs onnxruntime on the same ONNX


@dataclass(frozen=True)
class BuildPlan:
    """What to build: for which unit (``dla_core`` set for a DLA), at which precision, with which shapes."""

    target: str
    unit: str
    precision: str
    onnx: str
    dla_core: int | None = None
    workspace_mb: int = WORKSPACE_MB
    sparsity: bool = False
    profiles: Mapping[str, Mapping[str, list[int]]] = field(default_factory=dict)  # input -> min/opt/max
    inputs: tuple[Mapping[str, Any], ...] = ()
    engine: str = ENGINE
    graph: str | None = None  # the bundle's graph, in a kit of several (an encoder-decoder LM)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(timing_cache=TIMING_CACHE, max_rel_error=MAX_REL_ERROR[self.precision],
                    profiles={k: dict(v) for k, v in self.profiles.items()}, inputs=list(self.inputs))
        return data


def _profiles(inputs: Sequence[TensorSpec], example_sizes: Mapping[str, int], static: bool,
              ranges: Mapping[str, tuple[int, int, int]] | None = None) -> dict[str, dict[str, list[int]]]:
    """min / opt / max shapes of each input with a dynamic axis: the axis's ``ranges`` entry, else 1 / the
    example size / DYNAMIC_MAX x it; all three the opt size on a unit that runs static shapes only (DLA).

    Example:
        >>> _profiles([TensorSpec("past", ("batch", 4, "past_len", 8))], {}, False, {"past_len": (0, 15, 512)})
        {'past': {'min': [1, 4, 0, 8], 'opt': [1, 4, 15, 8], 'max': [8, 4, 512, 8]}}
    """
    ranges = dict(ranges or {})
    sizes = {**example_sizes, **{axis: opt for axis, (_, opt, _) in ranges.items()}}
    profiles = {}
    for spec in inputs:
        if not spec.dynamic_axes:
            continue
        opt = list(spec.concrete(sizes))
        low = [ranges[d][0] if d in ranges else 1 if isinstance(d, str) else d for d in spec.shape]
        high = [ranges[d][2] if d in ranges else o * DYNAMIC_MAX if isinstance(d, str) else d
                for d, o in zip(spec.shape, opt)]
        profiles[spec.name] = {"min": opt if static else low, "opt": opt, "max": opt if static else high}
    return profiles


def plan_build(target: Any, unit: str | None, precision: str, inputs: Sequence[TensorSpec],
               example_sizes: Mapping[str, int], *, onnx: str = "model.onnx", sparsity: bool = False,
               ranges: Mapping[str, tuple[int, int, int]] | None = None, engine: str = ENGINE,
               graph: str | None = None) -> BuildPlan:
    """The build plan for ``target``'s ``unit`` (default: the first TensorRT unit) at ``precision``."""
    units = [u for u in target.units if u.runtime == "tensorrt" and (not u.precisions or precision in u.precisions)]
    if not units:
        raise UsageError(f"target {target.name} has no TensorRT unit (runtime = \"tensorrt\") that runs {precision}")
    compute = target.unit(unit) if unit else (target.unit(target.default_unit) if target.unit(target.default_unit)
                                              in units else units[0])
    if compute.runtime != "tensorrt":
        raise UsageError(f"--unit {compute.name}: runs {compute.runtime}, not tensorrt")
    if compute.precisions and precision not in compute.precisions:
        raise UsageError(f"--precision {precision}: unit {compute.name} of {target.name} runs {', '.join(compute.precisions)}")
    dla_core = int("".join(c for c in compute.name if c.isdigit()) or 0) if compute.kind == "dla" else None
    profiles = _profiles(inputs, example_sizes, static=compute.static_shapes, ranges=ranges)
    specs = tuple({"name": s.name, "shape": profiles[s.name]["opt"] if s.name in profiles else list(s.shape),
                   "dtype": s.dtype} for s in inputs)
    return BuildPlan(target.name, compute.name, precision, onnx, dla_core=dla_core, sparsity=sparsity,
                     profiles=profiles, inputs=specs, engine=engine, graph=graph)


def trtexec_flags(plan: BuildPlan, major: int) -> list[str]:
    """The precision, sparsity and DLA flags for trtexec of TensorRT ``major`` (10: weakly typed; 11+: strongly
    typed, precision from the ONNX).

    Example:
        >>> trtexec_flags(BuildPlan("jetson", "gpu", "fp16", "model.onnx", sparsity=True), 10)
        ['--fp16', '--sparsity=enable']
    """
    flags: list[str] = []
    if major >= 11:
        flags.append("--stronglyTyped")
    elif plan.precision == "fp16":
        flags.append("--fp16")
    elif plan.precision == "int8":
        flags += ["--int8", "--fp16"]  # QDQ layers in int8, the layers between them may take fp16
    if plan.sparsity:
        flags.append("--sparsity=enable")
    if plan.dla_core is not None:
        flags += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    return flags


def shape_flags(plan: BuildPlan) -> list[str]:
    """``--minShapes/--optShapes/--maxShapes`` for the inputs with dynamic axes (none for a static graph).

    Example:
        >>> plan = BuildPlan("jetson", "gpu", "fp32", "m.onnx", profiles={"x": {"min": [1, 3], "opt": [2, 3], "max": [16, 3]}})
        >>> shape_flags(plan)
        ['--minShapes=x:1x3', '--optShapes=x:2x3', '--maxShapes=x:16x3']
    """
    if not plan.profiles:
        return []
    return [f"--{kind}Shapes=" + ",".join(f"{name}:" + "x".join(str(d) for d in shapes[kind])
                                          for name, shapes in plan.profiles.items())
            for kind in ("min", "opt", "max")]


def _trtexec_call(plan: BuildPlan) -> str:
    """The lines of build_engine.sh that build ``plan``'s engine with the version's flags."""
    common = [f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}", f"--memPoolSize=workspace:{plan.workspace_mb}M",
              f"--timingCacheFile={TIMING_CACHE}", *shape_flags(plan)]
    quote = lambda flags: " ".join(shlex.quote(f) for f in flags)  # noqa: E731
    return f"""if [ "$major" -ge 11 ]; then
  flags=({quote(trtexec_flags(plan, 11))})
else
  flags=({quote(trtexec_flags(plan, 10))})
fi
echo "TensorRT $major.$minor, {plan.engine}: $TRTEXEC ${{flags[*]-}}"
"$TRTEXEC" {quote(common)} ${{flags[@]+"${{flags[@]}}"}} "$@"
"""


def build_script(plans: BuildPlan | Sequence[BuildPlan]) -> str:
    """``build_engine.sh``: finds trtexec, reads its TensorRT version, and builds each plan's engine (one, or one
    per graph of an encoder-decoder LM) with that version's flags."""
    plans = [plans] if isinstance(plans, BuildPlan) else list(plans)
    plan, engines = plans[0], " ".join(p.engine for p in plans)
    dla_note = ""
    if plan.dla_core is not None:
        dla_note = """
if [ "$major" -eq 11 ] && [ "$minor" -lt 4 ]; then
  echo "build_engine.sh: TensorRT $major.$minor has no DLA (11.0-11.3); use TensorRT 10 (JetPack 6) or 11.4.1+" >&2
  exit 2
fi"""
    return f"""#!/usr/bin/env bash
# Build {engines} from {' '.join(p.onnx for p in plans)} on the device with trtexec (edgekit TensorRT kit; see TENSORRT.md).
# target {plan.target}, unit {plan.unit}, precision {plan.precision}. TensorRT 10 (JetPack 6) takes the precision
# flags; TensorRT 11 builds strongly typed networks (precision from the ONNX's QDQ nodes and casts).
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
  echo "build_engine.sh: trtexec not found (set TRTEXEC=/path/to/trtexec; JetPack: /usr/src/tensorrt/bin)" >&2
  exit 2
fi
# trtexec prints "[TensorRT v100300]" (10.3.0) when it starts
code="$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT v\\([0-9][0-9]*\\).*/\\1/p' | head -n 1)"
if [ -z "$code" ]; then  # else the Python package's version, e.g. 10.3.0 -> 100300
  code="$(python3 -c 'import tensorrt as t; a = (t.__version__.split(".") + ["0", "0"])[:3]; print(int(a[0]) * 10000 + int(a[1]) * 100 + int(a[2]))' 2>/dev/null || true)"
fi
if [ -z "$code" ]; then
  echo "build_engine.sh: cannot read the TensorRT version from $TRTEXEC --help" >&2
  exit 2
fi
if [ "$code" -ge 100000 ]; then major=$((code / 10000)); minor=$((code / 100 % 100)); else major=$((code / 1000)); minor=$((code / 100 % 10)); fi
if [ "$major" -lt 10 ]; then
  echo "build_engine.sh: TensorRT $major.$minor found; this kit is written for TensorRT 10 and 11" >&2
  exit 2
fi{dla_note}
{"".join(_trtexec_call(p) for p in plans)}if python3 -c "import tensorrt, onnxruntime, polygraphy" 2>/dev/null; then
  python3 build_engine.py --skip-build  # validate against onnxruntime and record the engine(s) in manifest.json
else
  echo "built {engines}; validate and record with: python3 build_engine.py --skip-build (see TENSORRT.md)"
fi
"""


def kit_readme(plans: BuildPlan | Sequence[BuildPlan]) -> str:
    """``TENSORRT.md``: how to build and validate the engine(s) on the device, and what was verified."""
    plans = [plans] if isinstance(plans, BuildPlan) else list(plans)
    plan = plans[0]
    engines = ", ".join(f"`{p.engine}`" for p in plans)
    shapes = "\n".join(f"- {p.graph + ' ' if p.graph else ''}`{name}`: min {s['min']}, opt {s['opt']}, max {s['max']}"
                       for p in plans for name, s in p.profiles.items())
    return f"""# TensorRT build kit

Made by `edgekit export` for target `{plan.target}`, unit `{plan.unit}`, precision `{plan.precision}`.
TensorRT engines only run on the GPU model and TensorRT version they were built with, so the engine is built
on the device from `{'`, `'.join(p.onnx for p in plans)}` (opset 17{', symmetric int8 QDQ' if plan.precision == 'int8' else ''}).

## Build and validate on the device

Either route writes {engines} into this bundle; `build_engine.py` then runs each engine and its ONNX (onnxruntime,
CPU) on the same seeded inputs, refuses a mean relative error above {MAX_REL_ERROR[plan.precision]:g}, and records the
engine, its TensorRT version and the GPU name (`ENGINE.json` beside it, and in `manifest.json`), so
`edgekit.runtimes.load_file("{plan.engine}")` (`pip install 'edgekit[tensorrt]'`) runs it and refuses it on another GPU or
TensorRT version.

1. Python API: `pip install onnxruntime polygraphy` (TensorRT's Python package comes with JetPack), then
   `python3 build_engine.py`.
2. trtexec: `bash build_engine.sh` (reads the TensorRT version from trtexec: TensorRT 10 gets
   `{' '.join(trtexec_flags(plan, 10)) or '(no precision flag)'}`, TensorRT 11 `{' '.join(trtexec_flags(plan, 11))}`;
   both `--memPoolSize=workspace:{plan.workspace_mb}M` and the timing cache `{TIMING_CACHE}`), then
   `python3 build_engine.py --skip-build` to validate and record it (build_engine.sh does this itself when
   tensorrt, onnxruntime and polygraphy import).

Until then the bundle runs its ONNX with onnxruntime (`edgekit run`); an engine that build_engine.sh wrote but
build_engine.py has not recorded yet is an unlisted file, which edgekit refuses: record it or delete it.
{('Optimisation profile (dynamic axes):' + chr(10) + shapes) if shapes else 'All input shapes are static.'}
{'DLA: FP16 and INT8 only, no dynamic shapes (the profile is fixed at the example size), batch <= 4096; layers the DLA cannot run fall back to the GPU (--allowGPUFallback). TensorRT 11.0-11.3 has no DLA.' if plan.dla_core is not None else ''}

## What was and was not verified

Verified where edgekit ran (no TensorRT there): this kit's files are generated and checked (`bash -n`,
`python -m py_compile`), the flags chosen per unit and precision, the ONNX fed to TensorRT matches the model
in onnxruntime, and the op-coverage check against TensorRT's published ONNX operator list.
Not verified: building or running an engine with real TensorRT; the scripts follow the documented trtexec
flags and Python API, but edgekit's tests never ran them.
"""


def symmetric_qdq(model: Any) -> tuple[Any, int]:
    """Rewrite every QuantizeLinear / DequantizeLinear with a nonzero or uint8 zero point to int8 with zero
    point 0 over the same real range (scale = max(|low|, |high|) / 127); TensorRT's parser requires zero points
    of 0 and dequantizes int8 only. A rewritten QuantizeLinear gets a Clip to the old range before it (the
    old range's clipping is part of the model: a uint8 zero point of 0 is a Relu onnxruntime fused away).
    Constant quantized inputs of a DequantizeLinear are requantized; int32 biases are folded back to float. Returns (model, how many scale / zero-point pairs and biases changed).

    Example:
        >>> import onnx
        >>> from onnx import helper as h, numpy_helper as nh, TensorProto as T
        >>> inits = [nh.from_array(np.array(0.1, np.float32), "s"), nh.from_array(np.array(128, np.uint8), "z")]
        >>> nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
        >>> g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])], inits)
        >>> model, count = symmetric_qdq(h.make_model(g))
        >>> count, nh.to_array(model.graph.initializer[1]).dtype.name, float(nh.to_array(model.graph.initializer[0])) > 0.1
        (1, 'int8', True)
    """
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    folded = 0
    for node in list(model.graph.node):  # int32 biases: TensorRT dequantizes int8 only, so they become float again
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and len(node.input) == 3 \
                and numpy_helper.to_array(inits[node.input[0]]).dtype == np.int32:
            data, scale, zero = (numpy_helper.to_array(inits[name]).astype(np.float64) for name in node.input)
            model.graph.initializer.append(numpy_helper.from_array(((data - zero) * scale).astype(np.float32), node.output[0]))
            model.graph.node.remove(node)
            folded += 1
    rewritten: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        if scale_name not in inits or zero_name not in inits:
            raise ExportError(f"node {node.name or node.op_type}: scale and zero point must be initializers for TensorRT")
        key = (scale_name, zero_name)
        if key not in rewritten:
            scale = numpy_helper.to_array(inits[scale_name]).astype(np.float64)
            zero = numpy_helper.to_array(inits[zero_name])
            if zero.dtype == np.int8 and not zero.any():
                continue
            info = np.iinfo(zero.dtype)
            low = (info.min - zero.astype(np.float64)) * scale
            high = (info.max - zero.astype(np.float64)) * scale
            new_scale = np.maximum(np.maximum(np.abs(low), np.abs(high)) / 127.0, 1e-12)
            rewritten[key] = (scale, zero, new_scale)
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a constant quantized tensor (weights)
            scale, zero, new_scale = rewritten[key]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            data = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
            shape = [1] * data.ndim
            if scale.ndim == 1 and data.ndim:
                shape[axis] = -1
            real = (data - zero.reshape(shape)) * scale.reshape(shape)
            requant = np.clip(np.round(real / new_scale.reshape(shape)), -127, 127).astype(np.int8)
            inits[node.input[0]].CopyFrom(numpy_helper.from_array(requant, node.input[0]))
    clips = 0
    for index, node in reversed(list(enumerate(model.graph.node))):
        key = (node.input[1], node.input[2]) if node.op_type == "QuantizeLinear" and len(node.input) == 3 else None
        if key not in rewritten or rewritten[key][0].ndim:
            continue
        # the old range clipped what the symmetric one lets through (a uint8 zero point of 0 was a fused Relu)
        scale, zero, _ = rewritten[key]
        info = np.iinfo(zero.dtype)
        low, high = (float((bound - zero.astype(np.float64)) * scale) for bound in (info.min, info.max))
        names = [f"{node.input[0]}_trt_clip_{what}" for what in ("min", "max", "out")]
        model.graph.initializer.extend([numpy_helper.from_array(np.array(low, np.float32), names[0]),
                                        numpy_helper.from_array(np.array(high, np.float32), names[1])])
        model.graph.node.insert(index, helper.make_node("Clip", [node.input[0], names[0], names[1]], [names[2]],
                                                        name=f"{node.name or node.input[0]}_trt_clip"))
        node.input[0] = names[2]
        clips += 1
    for (scale_name, zero_name), (scale, zero, new_scale) in rewritten.items():
        inits[scale_name].CopyFrom(numpy_helper.from_array(new_scale.astype(np.float32), scale_name))
        inits[zero_name].CopyFrom(numpy_helper.from_array(np.zeros(zero.shape, np.int8), zero_name))
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used and i.name not in
                 {o.name for o in model.graph.output}]:
        model.graph.initializer.remove(init)  # the folded biases' int32 data, scales and zero points
    return model, len(rewritten) + folded


def has_2to4_sparsity(model: Any) -> bool:
    """Whether every Conv / Gemm / MatMul weight with at least 4 input channels has at most 2 nonzeros in each
    group of 4 along its input channels (NVIDIA's 2:4 structured sparsity, which ``--sparsity=enable`` uses).

    Example:
        >>> from onnx import helper as h, numpy_helper as nh, TensorProto as T
        >>> w = np.tile(np.array([1, 0, 2, 0], np.float32), (8, 2))          # 8 outputs x 8 inputs, 2:4
        >>> g = h.make_graph([h.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 8])],
        ...                  [h.make_tensor_value_info("y", T.FLOAT, [1, 8])], [nh.from_array(w, "w")])
        >>> has_2to4_sparsity(h.make_model(g))
        True
    """
    from onnx import numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    weights = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            array = numpy_helper.to_array(inits[node.input[1]])
            if array.dtype.kind != "f" or array.ndim < 2:
                continue
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            # input channels on axis 1 for Conv (O, I, ...) and a transposed Gemm (O, I); axis 0 for MatMul (I, O)
            array = np.moveaxis(array, 1 if node.op_type == "Conv" or trans_b else 0, -1)
            if array.shape[-1] % 4 == 0 and array.shape[-1] >= 4:
                weights.append(array)
    if not weights:
        return False
    return all(((w.reshape(-1, 4) != 0).sum(axis=1) <= 2).all() for w in weights)


def _declared_2to4(compression: Mapping[str, Any] | None) -> bool:
    """Whether the manifest's compression record says the weights are 2:4 sparse.

    Example:
        >>> _declared_2to4({"sparsity": "2:4"}), _declared_2to4({"sparsity": "1:4"}), _declared_2to4(None)
        (True, False, False)
    """
    return bool(compression) and compression.get("sparsity") == "2:4"


def _tensorrt_onnx(model_file: Path, kit_dir: Path, precision: str) -> tuple[Any, str, str]:
    """The ONNX TensorRT is fed: the bundle's, or for int8 with asymmetric QDQ a symmetric copy written beside it
    (``<stem>.trt.onnx``); returns (model, file name, note)."""
    import onnx

    model = onnx.load(str(model_file))
    if precision == "int8":
        model, count = symmetric_qdq(model)
        if count:
            fed = f"{model_file.stem}.trt.onnx"
            onnx.save(model, str(kit_dir / fed))
            return model, fed, f"symmetric int8 QDQ copy ({count} scale/zero-point pairs rewritten to zero point 0)"
    return model, model_file.name, "the bundle's ONNX as is"


def _write_kit(kit_dir: Path, plans: Sequence[BuildPlan], config: Mapping[str, Any]) -> None:
    atomic_write_text(kit_dir / "tensorrt.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(kit_dir / "build_engine.sh", build_script(plans))
    (kit_dir / "build_engine.sh").chmod(0o755)
    atomic_write_text(kit_dir / "build_engine.py", (Path(__file__).with_name("trt_build_engine.py")).read_text())
    atomic_write_text(kit_dir / "TENSORRT.md", kit_readme(plans))


def _kit_record(plan: BuildPlan, note: str) -> dict[str, Any]:
    return {"onnx": plan.onnx, "onnx_note": note, "unit": plan.unit, "precision": plan.precision,
            "dla_core": plan.dla_core, "sparsity": plan.sparsity, "profiles": {k: dict(v) for k, v in plan.profiles.items()},
            "trtexec_flags": {"10": trtexec_flags(plan, 10), "11": trtexec_flags(plan, 11)}}


_NOT_BUILT = "kit generated and checked here; no engine built (TensorRT not installed)"


def write_tensorrt_kit(model_file: Path, kit_dir: Path, target: Any, precision: str, inputs: Sequence[TensorSpec],
                       example_sizes: Mapping[str, int], unit: str | None = None, *,
                       compression: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the kit into ``kit_dir`` (the staged bundle) for the bundle's ONNX ``model_file``; returns the
    manifest's record of it. An int8 file with asymmetric QDQ gets a symmetric copy, ``model.trt.onnx``.
    Sparse kernels are enabled when ``edgekit compress`` recorded 2:4 sparsity (``compression["sparsity"]``;
    the check of the weights cannot see through int8 QDQ) or the float weights are 2:4 sparse."""
    model, fed, note = _tensorrt_onnx(model_file, kit_dir, precision)
    plan = plan_build(target, unit, precision, inputs, example_sizes, onnx=fed,
                      sparsity=_declared_2to4(compression) or has_2to4_sparsity(model))
    _write_kit(kit_dir, [plan], plan.to_json())
    return {"files": [*KIT_FILES, *([fed] if fed != model_file.name else [])], **_kit_record(plan, note),
            "engine": None, "verified": _NOT_BUILT}


def write_tensorrt_graph_kits(files: Mapping[str, Path], kit_dir: Path, target: Any, precision: str,
                              inputs: Mapping[str, Sequence[TensorSpec]],
                              ranges: Mapping[str, Mapping[str, tuple[int, int, int]]], unit: str | None = None, *,
                              compression: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The kit for a bundle of several graphs (an encoder-decoder LM): one engine per graph (``encoder.engine``,
    ``decoder.engine``), each with an optimisation profile over its dynamic lengths from ``ranges`` (the family's
    (min, opt, max) per axis: source length, past length, batch), built by one build_engine.sh / build_engine.py."""
    plans, records, extra_files = [], {}, []
    for graph, model_file in files.items():
        model, fed, note = _tensorrt_onnx(model_file, kit_dir, precision)
        extra_files += [fed] if fed != model_file.name else []
        plan = plan_build(target, unit, precision, inputs[graph], {}, onnx=fed, ranges=ranges.get(graph, {}),
                          sparsity=_declared_2to4(compression) or has_2to4_sparsity(model),
                          engine=f"{model_file.stem}.engine", graph=graph)
        plans.append(plan)
        records[graph] = {**_kit_record(plan, note), "engine": None}
    _write_kit(kit_dir, plans, {"graphs": {p.graph: p.to_json() for p in plans}})
    return {"files": [*KIT_FILES, *extra_files], "graphs": records, "verified": _NOT_BUILT}
