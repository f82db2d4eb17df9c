"""Measure a model on this machine: whole-model latency percentiles and, optionally, per-node times.

Torch-free (the profiling agent runs this on the device). The whole-model numbers come from
:func:`edgekit.targets.measure.measure_latency` on a session loaded with fixed threads; per-node times
come from a *separate* onnxruntime session with profiling on (profiling slows every run a little, so
it never touches the whole-model numbers), whose JSON trace is parsed and deleted.

Example:
    >>> result = profile_model("model.onnx", threads=1, warmup=5, runs=20)   # doctest: +SKIP
    >>> result.stats.p50_ms, result.runtime                                 # doctest: +SKIP
    (0.41, 'onnxruntime')
"""

from __future__ import annotations

import bisect
import json
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import edgekit.runtimes as rt
from edgekit.runtimes.bundle import read_bundle, sha256_file
from edgekit.runtimes.errors import ModelLoadError, UsageError, require
from edgekit.runtimes.formats import format_for_suffix
from edgekit.runtimes.spec import random_inputs

from .measure import LatencyStats, measure_latency

__all__ = ["NodeTime", "ProfileResult", "profile_model", "device_facts", "machine_facts", "device_mismatch", "model_file",
           "example_sizes"]


@dataclass(frozen=True)
class NodeTime:
    """Median kernel time of one graph node over the profiled runs."""

    name: str
    op_type: str
    ms: float


@dataclass(frozen=True)
class ProfileResult:
    """What :func:`profile_model` measured; ``per_node`` is sorted by time, slowest first (empty unless asked).
    ``device`` is the measuring machine's :func:`machine_facts` (None from an agent too old to send them).

    Example:
        >>> stats = LatencyStats(1.0, 1.2, 1.5, 1.1, 0.9, runs=20, warmup=5)
        >>> r = ProfileResult(stats, (NodeTime("conv", "Conv", 0.8),), "ab" * 32, "onnxruntime", "1.20.0", 1)
        >>> ProfileResult.from_json(r.to_json()) == r
        True
    """

    stats: LatencyStats
    per_node: tuple[NodeTime, ...]
    model_sha256: str
    runtime: str
    runtime_version: str
    threads: int
    device: Mapping[str, Any] | None = None

    def to_record(self, target: str, precision: str, meta: Mapping[str, Any] | None = None):
        """This measurement as a latency-store record of kind "model", keyed by the model's sha256."""
        from .store import LatencyRecord, now_iso

        stats = self.stats
        full_meta = {"p99_ms": stats.p99_ms, "mean_ms": stats.mean_ms, "min_ms": stats.min_ms, "warmup": stats.warmup,
                     **(dict(meta) if meta else {})}
        if self.per_node:
            full_meta["per_node"] = [[n.name, n.op_type, n.ms] for n in self.per_node]
        if self.device is not None:
            full_meta["device"] = dict(self.device)
        return LatencyRecord(target, self.runtime, self.runtime_version, precision, self.threads, "model",
                             self.model_sha256, stats.p50_ms, stats.p90_ms, stats.runs, now_iso(), full_meta)

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": self.stats.to_json(),
            "per_node": [{"name": n.name, "op_type": n.op_type, "ms": n.ms} for n in self.per_node],
            "model_sha256": self.model_sha256,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "device": None if self.device is None else dict(self.device),
        }

    @classmethod
    def from_json(cls, data: Any) -> "ProfileResult":
        """Parse :meth:`to_json` output; raises ValueError naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("expected an object")
        try:
            raw = data["stats"]
            stats = LatencyStats(
                **{name: _number(raw[name], f"stats.{name}") for name in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms")},
                runs=_int(raw["runs"], "stats.runs"),
                warmup=_int(raw["warmup"], "stats.warmup"),
                batch=_int(raw.get("batch", 1), "stats.batch"),
            )
            nodes = tuple(
                NodeTime(_str(n["name"], "per_node.name"), _str(n["op_type"], "per_node.op_type"), _number(n["ms"], "per_node.ms"))
                for n in data["per_node"]
            )
            return cls(
                stats,
                nodes,
                _str(data["model_sha256"], "model_sha256"),
                _str(data["runtime"], "runtime"),
                _str(data["runtime_version"], "runtime_version"),
                _int(data["threads"], "threads"),
                _device(data.get("device")),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from exc
        except TypeError as exc:
            raise ValueError(f"wrong field type ({exc})") from exc


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {name!r}: expected a number, got {value!r}")
    return float(value)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r}: expected an integer, got {value!r}")
    return value


def _device(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"field 'device': expected an object, got {value!r}")
    return {"machine": _str(value["machine"], "device.machine"), "cpu_model": _str(value["cpu_model"], "device.cpu_model"),
            "logical_cores": _int(value["logical_cores"], "device.logical_cores")}


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"field {name!r}: expected a string, got {value!r}")
    return value


def model_file(path: str | Path) -> Path:
    """The model file behind ``path``: a bundle's main graph file, or ``path`` itself.

    Example:
        >>> model_file("net.onnx")
        PosixPath('net.onnx')
    """
    path = Path(path)
    return read_bundle(path).file() if path.is_dir() else path


def example_sizes(path: str | Path) -> dict[str, int]:
    """The sizes of named axes a bundle was exported at (``{}`` for a bare model file or an older bundle).

    Example:
        >>> example_sizes("net.onnx")
        {}
    """
    path = Path(path)
    return dict(read_bundle(path, verify=False).manifest.example_sizes) if path.is_dir() else {}


def _runtime_version(backend: str) -> str:
    if backend == "onnxruntime":
        return str(require("onnxruntime", "ort").__version__)
    return "unknown"


def profile_model(
    path: str | Path,
    *,
    threads: int = 1,
    warmup: int = 10,
    runs: int = 50,
    per_node: bool = False,
) -> ProfileResult:
    """Time a bundle directory or a bare ``.onnx`` on this machine with ``threads`` intra-op threads.

    Example:
        >>> profile_model("missing.onnx")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: missing.onnx: no such file or bundle directory
    """
    path = Path(path)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads must be an integer >= 1, got {threads!r}")
    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    session = rt.load(path, threads=threads)
    file = model_file(path)
    feeds = random_inputs(session.inputs, example_sizes(path))
    stats = measure_latency(session, feeds, warmup=warmup, runs=runs)
    record = format_for_suffix(file.suffix)  # the runtime as the format table names it: the store is searched by it
    runtime = record.runtime if record is not None else session.backend
    nodes: tuple[NodeTime, ...] = ()
    if per_node:
        if session.backend != "onnxruntime":
            raise UsageError(f"{path}: per-node times need onnxruntime, this model runs on {session.backend}")
        providers = session.raw.get_providers()
        del session  # one session at a time: the profiling one should not compete for memory
        nodes = _node_times(file, feeds, threads=threads, warmup=warmup, runs=runs, providers=providers)
    return ProfileResult(stats, nodes, sha256_file(file), runtime, _runtime_version(runtime), threads, machine_facts())


def _node_times(
    file: Path, feeds: Mapping[str, np.ndarray], *, threads: int, warmup: int, runs: int, providers: list[str]
) -> tuple[NodeTime, ...]:
    """Per-node median kernel times from an onnxruntime profiling session over ``runs`` timed runs."""
    ort = require("onnxruntime", "ort")
    with tempfile.TemporaryDirectory(prefix="edgekit-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "trace")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(file), sess_options=options, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{file}: onnxruntime cannot load it for profiling: {str(exc).strip()[:200]}") from exc
        for _ in range(warmup + runs):
            session.run(None, dict(feeds))
        trace = Path(session.end_profiling())
        try:
            events = json.loads(trace.read_text(encoding="utf-8"))
        finally:
            trace.unlink(missing_ok=True)
    return parse_trace(events, runs)


def parse_trace(events: list[dict[str, Any]], runs: int) -> tuple[NodeTime, ...]:
    """Per-node median kernel time (ms) over the last ``runs`` ``model_run`` spans of an onnxruntime trace.

    A node that runs several times in one model run (inside a loop) counts the sum for that run; a
    node absent from a run counts 0 there. Sorted slowest first.

    Example:
        >>> ev = [{"cat": "Node", "name": "conv_kernel_time", "ts": 1, "dur": 800, "args": {"op_name": "Conv"}},
        ...       {"cat": "Session", "name": "model_run", "ts": 0, "dur": 900}]
        >>> parse_trace(ev, runs=1)
        (NodeTime(name='conv', op_type='Conv', ms=0.8),)
    """
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    spans = spans[-runs:]
    per_run: list[dict[str, float]] = [{} for _ in spans]
    op_types: dict[str, str] = {}
    starts = [s for s, _ in spans]
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        ts = event["ts"]
        index = _span_index(starts, spans, ts)
        if index is None:
            continue
        node = name[: -len("_kernel_time")]
        op_types[node] = str(event.get("args", {}).get("op_name", "?"))
        per_run[index][node] = per_run[index].get(node, 0.0) + event["dur"] / 1000.0
    times = [
        NodeTime(node, op_types[node], round(statistics.median(run.get(node, 0.0) for run in per_run), 6))
        for node in op_types
    ]
    return tuple(sorted(times, key=lambda n: (-n.ms, n.name)))


def _span_index(starts: list[float], spans: list[tuple[float, float]], ts: float) -> int | None:
    i = bisect.bisect_right(starts, ts) - 1
    if i >= 0 and spans[i][0] <= ts <= spans[i][1]:
        return i
    return None


def device_facts() -> dict[str, Any]:
    """What this device is: CPU model, cores, clock, vector flags, memory, OS, onnxruntime version and providers.

    Example:
        >>> facts = device_facts()
        >>> facts["logical_cores"] >= 1 and "onnxruntime" in facts
        True
    """
    import edgekit

    from .host import detect_host

    info = detect_host()
    facts: dict[str, Any] = {
        "cpu_model": info.cpu_model,
        "logical_cores": info.logical_cores,
        "clock_ghz": info.clock_ghz,
        "flags": sorted(info.flags),
        "memory_gb": info.memory_gb,
        "os": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "edgekit": edgekit.__version__,
    }
    try:
        ort = require("onnxruntime", "ort")
        facts["onnxruntime"] = str(ort.__version__)
        facts["providers"] = list(ort.get_available_providers())
    except ImportError:
        facts["onnxruntime"] = None
        facts["providers"] = []
    return facts


def machine_facts() -> dict[str, Any]:
    """Which machine this is, recorded with every measurement: CPU architecture, CPU model, logical cores.

    Example:
        >>> import platform
        >>> machine_facts()["machine"] == platform.machine()
        True
    """
    from .host import detect_host

    info = detect_host()
    return {"machine": platform.machine(), "cpu_model": info.cpu_model, "logical_cores": info.logical_cores}


_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}


def device_mismatch(target, device: Mapping[str, Any] | None) -> str | None:
    """Why the machine that measured (:func:`machine_facts`) is not ``target`` as its profile describes it,
    or None when nothing contradicts it (the architecture and, where the profile gives them, the CPU cores).

    Example:
        >>> from edgekit.targets import load_target
        >>> device_mismatch(load_target("rpi5"), {"machine": "x86_64", "cpu_model": "Xeon", "logical_cores": 4})
        "the agent's machine is x86_64, but raspberry-pi-5 is aarch64"
        >>> device_mismatch(load_target("rpi5"), {"machine": "aarch64", "cpu_model": "Cortex-A76", "logical_cores": 4}) is None
        True
    """
    if device is None:
        return None
    problems = []
    machine = str(device.get("machine", ""))
    if target.arch and machine and _ARCH_ALIASES.get(machine.lower(), machine.lower()) != target.arch:
        problems.append(f"the agent's machine is {machine}, but {target.name} is {target.arch}")
    cores = [u.cores for u in target.units if u.kind == "cpu" and u.cores]
    found = device.get("logical_cores")
    if cores and isinstance(found, int) and found != cores[0]:
        problems.append(f"it has {found} CPU cores ({device.get('cpu_model') or 'unknown CPU'}), "
                        f"{target.name} has {cores[0]}")
    return "; ".join(problems) or None
