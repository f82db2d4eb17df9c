"""The one latency chooser: the best latency edgekit has for a model on a unit, labelled with its source.

Order, best first (:data:`SOURCES`):

- ``measured``: this very model (by its file's sha256) timed on the device with the runtime that runs
  its format, at this precision and thread count (the latency store, ``edgekit profile``);
- ``calibrated``: a block table when the model is given as blocks (``edgekit lut``), else the per-op
  model fitted to measurements on this unit (``edgekit calibrate``);
- ``calibrated (published)``: the model fitted to published measurements of this unit, runtime and
  precision, shipped in the target's TOML (:mod:`edgekit.targets.published`; all of a CPU's cores);
- ``modeled``: the roofline over the target's published numbers.

:func:`estimate` returns a :class:`LatencyEstimate`, the typed form of a manifest's latency entry.
:func:`choose_basis` is the part of the order below ``measured`` (search uses it on blocks), and
:func:`units_for_format` says which units can run a file of a format at a precision, so that a bundle
only ever carries latencies of units that can run it (:func:`estimate_for_format`).

Example:
    >>> from edgekit.targets import load_target
    >>> from edgekit.targets.latency import OpCost
    >>> jetson = load_target("jetson")
    >>> [u.name for u in units_for_format(jetson, "onnx", "fp32")]
    ['cpu']
    >>> ops = [OpCost("conv", 10_000_000, 1000, 100_000)]
    >>> e = estimate(jetson, "cpu", "fp32", ops=ops, fmt="onnx", directory=Path("no-such-dir"))
    >>> e.source, e.unit, e.runtime, e.ms > 0
    ('modeled', 'cpu', 'onnxruntime', True)
    >>> LatencyEstimate.from_json(e.to_json()) == e
    True
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AbstractSet, Any, Iterable, Iterator, Mapping, Protocol, Sequence

from edgekit.runtimes.errors import BundleError, TargetError
from edgekit.runtimes.formats import get_format

from .calibrated import Calibration
from .fitted import load_calibration, tables_dir
from .latency import CostLike, Prediction, predict_ms, runnable_unit
from .published_features import predict_published
from .published_fit import PublishedFit, load_user_fit
from .lut import BlockTable
from .store import LatencyRecord, LatencyStore, default_store_path
from .target import ComputeUnit, Target

__all__ = [
    "SOURCES",
    "LatencyEstimate",
    "LatencyBasis",
    "choose_basis",
    "estimate",
    "estimate_for_format",
    "units_for_format",
    "no_unit_reason",
    "open_store",
]

PUBLISHED = "calibrated (published)"
SOURCES = ("measured", "calibrated", PUBLISHED, "modeled")  # best first
MEASURED_NOTE = "this model, timed on the device"
# What each way of predicting (LatencyBasis.method) is labelled.
METHOD_SOURCE = {"table": "calibrated", "calibration": "calibrated", "published": PUBLISHED, "roofline": "modeled"}
# Keys of the JSON form, in order; anything else a manifest entry holds is kept in ``details``.
_CORE_KEYS = ("source", "target", "unit", "runtime", "format", "precision", "threads", "batch", "ms")
_STAT_KEYS = ("p90_ms", "runs")


@dataclass(frozen=True)
class LatencyEstimate:
    """One latency in ms with where it came from and what it is the latency of.

    ``ms`` is None when the target lacks a number the model needs (``notes`` says which). ``unit`` and
    ``precision`` are None only in entries of older manifests that did not record them. ``threads``
    None means all of the unit's cores. ``p90_ms`` and ``runs`` come with measurements; ``details``
    holds anything else an entry says (the host's CPU model, the roofline's terms).

    Example:
        >>> old = {"source": "measured", "device": "host", "cpu": "Intel Xeon", "runtime": "onnxruntime",
        ...        "threads": 1, "batch": 1, "ms": 1.2554, "p90_ms": 1.3, "runs": 50}
        >>> e = LatencyEstimate.from_json(old)
        >>> e.target, e.details
        ('host', {'cpu': 'Intel Xeon'})
        >>> e.summary()
        'latency: 1.255 ms p50 (measured on host, onnxruntime, 1 thread(s), batch 1)'
        >>> e.to_json()["target"], "device" in e.to_json()
        ('host', False)
    """

    ms: float | None
    source: str
    target: str
    unit: str | None
    precision: str | None
    runtime: str | None = None
    format: str | None = None
    threads: int | None = None
    batch: int = 1
    notes: tuple[str, ...] = ()
    p90_ms: float | None = None
    runs: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.source in SOURCES, f"latency source {self.source!r} is not one of {SOURCES}"
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "details", dict(self.details))

    def to_json(self) -> dict[str, Any]:
        """The manifest's latency entry: the same keys for every source (``p90_ms``/``runs`` when measured)."""
        data: dict[str, Any] = {key: getattr(self, key) for key in _CORE_KEYS}
        data.update({key: getattr(self, key) for key in _STAT_KEYS if getattr(self, key) is not None})
        data["notes"] = list(self.notes)
        data.update(self.details)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "latency entry") -> "LatencyEstimate":
        """Parse an entry written by :meth:`to_json`, or by an older edgekit (``device`` for the target)."""
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: expected an object, got {type(data).__name__}")
        target = data.get("target", data.get("device"))
        checks = (
            ("source", data.get("source"), lambda v: v in SOURCES, f"one of {', '.join(SOURCES)}"),
            ("target", target, lambda v: isinstance(v, str) and v != "", "a target name (key 'target' or 'device')"),
            ("ms", data.get("ms"), lambda v: v is None or _is_number(v), "a number or null"),
            ("p90_ms", data.get("p90_ms"), lambda v: v is None or _is_number(v), "a number or null"),
            ("threads", data.get("threads"), lambda v: v is None or _is_count(v), "a whole number >= 1 or null"),
            ("runs", data.get("runs"), lambda v: v is None or _is_count(v), "a whole number >= 1 or null"),
            ("batch", data.get("batch", 1), _is_count, "a whole number >= 1"),
            ("notes", data.get("notes", []), lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
             "a list of strings"),
            *((key, data.get(key), lambda v: v is None or isinstance(v, str), "a string or null")
              for key in ("unit", "precision", "runtime", "format")),
        )
        for key, value, ok, expected in checks:
            if not ok(value):
                raise BundleError(f"{where}: field {key!r}: expected {expected}, got {value!r}")
        known = {*_CORE_KEYS, *_STAT_KEYS, "notes", "device"}
        return cls(
            ms=None if data.get("ms") is None else float(data["ms"]), source=data["source"], target=target,
            unit=data.get("unit"), precision=data.get("precision"), runtime=data.get("runtime"),
            format=data.get("format"), threads=data.get("threads"), batch=data.get("batch", 1),
            notes=tuple(data.get("notes", [])), p90_ms=None if data.get("p90_ms") is None else float(data["p90_ms"]),
            runs=data.get("runs"), details={k: v for k, v in data.items() if k not in known},
        )

    def summary(self) -> str:
        """The line ``edgekit export`` prints for this entry.

        Example:
            >>> LatencyEstimate(4.1213, "modeled", "jetson-orin-nano", "cpu", "fp32", "onnxruntime").summary()
            'latency on jetson-orin-nano cpu (onnxruntime, fp32): 4.121 ms (modeled, batch 1)'
        """
        ms = "unknown" if self.ms is None else f"{self.ms:.3f} ms"
        if self.source == "measured":
            return f"latency: {ms} p50 (measured on {self.target}, {self.runtime}, {self.threads} thread(s), batch {self.batch})"
        return f"latency on {self.target} {self.unit} ({self.runtime}, {self.precision}): {ms} ({self.source}, batch {self.batch})"

    def rounded(self, digits: int = 4) -> "LatencyEstimate":
        """The same estimate with its milliseconds rounded (as a manifest records them)."""
        def r(value):
            return round(value, digits) if isinstance(value, float) else value

        return replace(self, ms=r(self.ms), p90_ms=r(self.p90_ms),
                       details={k: r(v) if k.endswith("_ms") else v for k, v in self.details.items()})

    @classmethod
    def from_prediction(cls, prediction: Prediction, unit: str, runtime: str | None, fmt: str | None = None,
                        threads: int | None = None, batch: int = 1) -> "LatencyEstimate":
        """A latency model's prediction (calibrated or modeled) for ``unit``; the roofline's terms go to details."""
        terms = {"compute_ms": prediction.compute_ms, "memory_ms": prediction.memory_ms, "overhead_ms": prediction.overhead_ms}
        details = terms if prediction.ms is not None and any(terms.values()) else {}
        return cls(prediction.ms, prediction.source, prediction.target, unit, prediction.precision, runtime, fmt,
                   threads, batch, prediction.notes, details=details)

    @classmethod
    def from_record(cls, record: LatencyRecord, unit: str, fmt: str | None = None, batch: int = 1) -> "LatencyEstimate":
        """A latency-store measurement of this model on ``unit``."""
        note = f"{MEASURED_NOTE} ({record.runs} runs, {record.runtime} {record.runtime_version}, {record.measured_at})"
        return cls(record.p50_ms, "measured", record.target, unit, record.precision, record.runtime, fmt,
                   record.threads, batch, (note,), p90_ms=record.p90_ms, runs=record.runs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# --- below measured: table > calibration > roofline ------------------------------------------------


@dataclass(frozen=True)
class LatencyBasis:
    """What a latency is predicted from on one (target, unit, precision, threads) when this very model was
    never measured: a block table (for a model given as blocks) > a fitted calibration > the fit to
    published measurements > the roofline."""

    target: Target
    unit: str
    precision: str
    threads: int | None
    table: BlockTable | None = None
    calibration: Calibration | None = None
    published: PublishedFit | None = None

    def method(self, blocks: bool) -> str:
        """``table``, ``calibration``, ``published`` or ``roofline``: how a model is predicted (given as blocks or not)."""
        if blocks and self.table is not None:
            return "table"
        if self.calibration is not None:
            return "calibration"
        return "published" if self.published is not None else "roofline"

    def source(self, blocks: bool) -> str:
        """``calibrated``, ``calibrated (published)`` or ``modeled``: the label of :meth:`method`'s predictions."""
        return METHOD_SOURCE[self.method(blocks)]

    def predict_published(self, ops: Iterable[CostLike]) -> Prediction:
        """The published calibration's prediction (its error in the note)."""
        fit = self.published
        assert fit is not None, "predict_published needs a published fit"
        ms = predict_published(fit, ops, self.target, self.unit)
        return Prediction(ms, PUBLISHED, self.target.name, self.unit, self.precision, notes=(fit.label(),))

    def predict(self, ops: Iterable[CostLike] | None = None, blocks: Sequence[str] | None = None) -> Prediction:
        """The prediction for a model given by its op costs or, with a table, by its block keys."""
        method = self.method(blocks is not None)
        if method == "table":
            return self.table.predict(blocks)  # type: ignore[union-attr]
        if ops is None:
            raise TargetError(f"no block table for {self.target.name} at {self.precision}: predicting needs the model's op costs")
        if method == "calibration":
            return self.calibration.predict(ops)  # type: ignore[union-attr]
        if method == "published":
            return self.predict_published(ops)
        return predict_ms(ops, self.target, self.unit, self.precision, self.threads)


def choose_basis(target: Target, unit: str | None, precision: str, threads: int | None = None, *,
                 table: BlockTable | None = None, calibration: Calibration | None = None,
                 directory: Path | None = None, runtime: str | None = None) -> LatencyBasis:
    """The best predictor for ``unit`` (default: the target's) at ``precision``: ``table`` when given (for a
    model known by its blocks), else the fitted calibration (``calibration``, else the saved one in
    ``directory``), else the target's fit to published measurements for ``runtime`` (default: the unit's;
    a CPU only at all of its cores), else the roofline.

    Example:
        >>> from edgekit.targets import load_target
        >>> basis = choose_basis(load_target("rpi5"), None, "int8", directory=Path("no-such-dir"))
        >>> basis.unit, basis.method(blocks=True), basis.source(blocks=False)
        ('cpu', 'roofline', 'modeled')
    """
    u = runnable_unit(target, unit, precision)
    if calibration is None and table is None:
        calibration = load_calibration(target, u.name, precision, threads, directory)
    all_cores = u.kind != "cpu" or threads is None or threads == u.cores
    published = None
    if all_cores:  # your refit (edgekit truth add) > the one shipped in the TOML
        published = (load_user_fit(directory or tables_dir(), target.name, u.name, runtime or u.runtime, precision)
                     or u.published_fit(runtime or u.runtime, precision))
    return LatencyBasis(target, u.name, precision, threads, table, calibration, published)


# --- measured: the latency store -------------------------------------------------------------------


class MeasuredLookup(Protocol):
    def lookup(self, target: str, key: str, *, runtime: str, precision: str, threads: int) -> LatencyRecord | None: ...


class _NoMeasurements:
    """An absent store: nothing was measured."""

    def lookup(self, target: str, key: str, *, runtime: str, precision: str, threads: int) -> None:
        return None


@contextmanager
def open_store(store: MeasuredLookup | str | Path | None = None) -> Iterator[MeasuredLookup]:
    """``store`` itself when it is open, else the store file at ``store`` (default: the user cache's),
    opened for the duration; a file that does not exist reads as an empty store and is not created."""
    if store is not None and not isinstance(store, (str, Path)):
        yield store
        return
    path = Path(store) if store is not None else default_store_path()
    if not path.is_file():
        yield _NoMeasurements()
        return
    with LatencyStore(path) as opened:
        yield opened


def _store_threads(unit: ComputeUnit, threads: int | None) -> int | None:
    """The thread count a measurement was stored under: ``threads``, or all of a CPU's cores."""
    if threads is not None:
        return threads
    return unit.cores if unit.kind == "cpu" else 1


# --- the chooser ------------------------------------------------------------------------------------


def estimate(
    target: Target, unit: str | None = None, precision: str = "fp32", *,
    ops: Iterable[CostLike] | None = None, blocks: Sequence[str] | None = None, table: BlockTable | None = None,
    model_sha256: str | None = None, fmt: str | None = None, runtime: str | None = None, threads: int | None = None,
    store: MeasuredLookup | str | Path | None = None, directory: Path | None = None, batch: int = 1,
) -> LatencyEstimate:
    """The best latency of a model on ``unit`` (default: the target's) at ``precision``: measured > calibrated (yours)
    > calibrated (published) > modeled.

    The model is given by its file's ``model_sha256`` (looked up in ``store``, default: the user's, with
    the runtime at ``threads``) and its op costs ``ops`` (or block keys ``blocks`` with a block ``table``).
    The runtime is ``runtime``, else the one of format ``fmt`` (edgekit.runtimes.formats), else the unit's;
    a unit that does not run ``fmt`` is predicted for its own runtime (``format`` None) and never takes a
    measurement. ``directory`` holds the calibrations (default: beside
    the store). ``threads`` None means all of the unit's cores.
    """
    u = runnable_unit(target, unit, precision)
    runs_fmt = fmt is None or fmt in u.formats
    run_by = (runtime or (get_format(fmt).runtime if fmt else u.runtime)) if runs_fmt else u.runtime
    stored_threads = _store_threads(u, threads)
    if model_sha256 is not None and runs_fmt and stored_threads is not None:
        with open_store(store) as opened:
            record = opened.lookup(target.name, model_sha256, runtime=run_by, precision=precision, threads=stored_threads)
        if record is not None:
            return LatencyEstimate.from_record(record, u.name, fmt, batch)
    basis = choose_basis(target, u.name, precision, threads, table=table if blocks is not None else None, directory=directory,
                         runtime=run_by)
    found = LatencyEstimate.from_prediction(basis.predict(ops, blocks), u.name, run_by, fmt if runs_fmt else None,
                                            threads, batch)
    if found.source == PUBLISHED:
        found = replace(found, details={**found.details, "error": basis.published.error})  # type: ignore[union-attr]
    return found


def units_for_format(target: Target, fmt: str, precision: str, unit: str | None = None) -> tuple[ComputeUnit, ...]:
    """The units of ``target`` that run a ``fmt`` file at ``precision``, default unit first (only ``unit`` when given).

    Example:
        >>> from edgekit.targets import load_target
        >>> [u.name for u in units_for_format(load_target("rpi5"), "onnx", "fp16")]
        ['cpu']
        >>> units_for_format(load_target("jetson"), "onnx", "fp16")
        ()
    """
    candidates = [target.unit(unit)] if unit else sorted(target.units, key=lambda u: u.name != target.default_unit)
    return tuple(u for u in candidates if fmt in u.formats and precision in u.precisions)


def no_unit_reason(target: Target, fmt: str, precision: str, unit: str | None = None) -> str:
    """Why no unit runs a ``fmt`` file at ``precision``, in one line naming what each unit runs.

    Example:
        >>> from edgekit.targets import load_target
        >>> no_unit_reason(load_target("jetson"), "onnx", "fp16")
        'no unit runs onnx fp16 (gpu runs tensorrt; cpu runs onnx at fp32, int8)'
    """
    candidates = [target.unit(unit)] if unit else sorted(target.units, key=lambda u: u.name != target.default_unit)
    what = "; ".join(f"{u.name} runs {fmt} at {', '.join(u.precisions)}" if fmt in u.formats
                     else f"{u.name} runs {', '.join(u.formats)}" for u in candidates)
    return f"no unit runs {fmt} {precision} ({what})"


def with_fallback(found: LatencyEstimate, target: Target, precision: str, ops: Sequence[CostLike], moved: AbstractSet[str],
                  fallback_unit: str, *, threads: int | None = None, directory: Path | None = None) -> LatencyEstimate:
    """``found`` (the unit's prediction for the nodes it runs) plus the nodes ``moved`` to ``fallback_unit``
    (op coverage: ops the unit cannot run), predicted there; the weaker of the two sources labels the sum.

    Example:
        >>> from edgekit.targets import load_target
        >>> from edgekit.targets.latency import OpCost
        >>> orin = load_target("jetson-agx-orin")
        >>> ops = [OpCost("conv", 50_000_000, 1000, name="a"), OpCost("conv", 200_000_000, 4000, name="b")]
        >>> dla = LatencyEstimate(1.0, "modeled", orin.name, "dla0", "fp16")
        >>> both = with_fallback(dla, orin, "fp16", ops, {"b"}, "gpu", directory=Path("none"))
        >>> both.ms > 1.0, both.source, both.details["fallback"]["unit"], both.details["fallback"]["nodes"]
        (True, 'modeled', 'gpu', 1)
        >>> coral = load_target("coral")  # its host CPU has no published peak: the fallback is named, not priced
        >>> with_fallback(LatencyEstimate(1.0, "modeled", coral.name, "tpu", "int8"), coral, "int8", ops, {"b"},
        ...               "cpu", directory=Path("none")).notes[-1]
        '1 node(s) fall back to cpu: not priced (no published int8 peak for unit cpu)'
    """
    if found.ms is None or found.source == "measured" or not moved:
        return found  # a measurement of the file covers its fallback already
    off = [op for op in ops if getattr(op, "name", None) in moved]
    unit = target.unit(fallback_unit)
    there = estimate(target, unit.name, precision if precision in unit.precisions else unit.precisions[0], ops=off,
                     threads=threads, directory=directory)
    if there.ms is None:
        return replace(found, notes=(*found.notes, f"{len(off)} node(s) fall back to {unit.name}: not priced "
                                                   f"({'; '.join(there.notes)})"))
    source = max(found.source, there.source, key=SOURCES.index)
    return replace(found, ms=found.ms + there.ms, source=source,
                   notes=(*found.notes, f"{len(off)} node(s) fall back to {unit.name}: +{there.ms:.3f} ms ({there.source})"),
                   details={**found.details, "fallback": {"unit": unit.name, "nodes": len(off), "ms": there.ms,
                                                          "source": there.source}})


def estimate_for_format(
    target: Target, fmt: str, precision: str, *, ops: Iterable[CostLike], runtime: str | None = None,
    model_sha256: str | None = None, unit: str | None = None, threads: int | None = None,
    store: MeasuredLookup | str | Path | None = None, directory: Path | None = None,
    fallback: Mapping[str, tuple[str, AbstractSet[str]]] | None = None,
) -> tuple[tuple[LatencyEstimate, ...], str | None]:
    """A bundle's latency entries on ``target``: one per unit that runs its ``fmt`` file at ``precision``
    (only ``unit`` when given), default unit first, rounded as a manifest records them; plus, when there is
    none, why not in one line. ``fallback`` maps a unit to (the unit its unsupported nodes move to, their
    names): those nodes are priced there and added (:func:`with_fallback`).

    Example:
        >>> from edgekit.targets import load_target
        >>> from edgekit.targets.latency import OpCost
        >>> entries, note = estimate_for_format(load_target("jetson"), "onnx", "fp32", ops=[OpCost("conv", 10_000_000)],
        ...                                     directory=Path("no-such-dir"))
        >>> [(e.unit, e.source) for e in entries], note
        ([('cpu', 'modeled')], None)
    """
    units = units_for_format(target, fmt, precision, unit)
    if not units:
        return (), no_unit_reason(target, fmt, precision, unit)
    ops = list(ops)
    entries, unknown = [], []
    with open_store(store if model_sha256 is not None else _NoMeasurements()) as opened:
        for u in units:
            to, moved = (fallback or {}).get(u.name, (None, frozenset()))
            found = estimate(target, u.name, precision, ops=[op for op in ops if getattr(op, "name", None) not in moved],
                             model_sha256=model_sha256, fmt=fmt, runtime=runtime, threads=threads, store=opened,
                             directory=directory)
            if to is not None and found.source != "measured":
                found = with_fallback(found, target, precision, ops, moved, to, threads=threads, directory=directory)
            if found.ms is None:
                unknown.append(f"{u.name}: {'; '.join(found.notes) or 'no published peak'}")
            else:
                entries.append(found.rounded())
    return tuple(entries), (None if entries else "; ".join(unknown))
