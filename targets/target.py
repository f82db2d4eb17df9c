"""What a device is, as data: compute units with peak throughput per precision, memory, formats.

A target profile is a TOML file (``targets/*.toml`` or your own); :func:`load_target_file` reads it and
validates it strictly. Peaks are *dense* TOPS (int8) or TFLOPS (fp32/fp16). A figure that no source
publishes is left out of the file and reads as ``None`` / absent here: the latency model then says
"unknown" instead of using an invented number.

Example:
    >>> gpu = ComputeUnit(name="gpu", kind="gpu", runtime="tensorrt", formats=("tensorrt",),
    ...                   peak={"fp16": 16.75, "int8": 33.5})
    >>> t = Target(name="board", description="my board", units=(gpu,), default_unit="gpu")
    >>> t.unit("gpu").peak["int8"], t.precisions, t.formats
    (33.5, ('fp16', 'int8'), ('tensorrt',))
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NoReturn

from edgekit.runtimes.errors import TargetError
from edgekit.runtimes.formats import FORMAT_NAMES, RUNTIME_FORMATS, RUNTIME_NAMES
from edgekit.runtimes.precision import PRECISIONS

from .published_fit import FEATURES, PublishedFit

from .ops import OpSupport, read_ops

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from .host import HostInfo

__all__ = [
    "PRECISIONS",
    "KINDS",
    "FORMATS",
    "RUNTIMES",
    "ComputeUnit",
    "Target",
    "load_target_file",
    "apply_host",
]

KINDS = ("cpu", "gpu", "npu", "dla", "tpu")
FORMATS = FORMAT_NAMES  # the registered formats (edgekit.runtimes.formats), read at each use
RUNTIMES = RUNTIME_NAMES  # every runtime some registered format names, read at each use

# The file formats each runtime loads (from the format records); a unit's runtime must load one of its formats.
_RUNTIME_FORMATS = RUNTIME_FORMATS
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class _FrozenMap(Mapping[str, float]):
    """A read-only, hashable, picklable str -> float mapping (a frozen dataclass may not hold a dict)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, float] = ()) -> None:  # type: ignore[assignment]
        self._data = dict(data)

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_FrozenMap, (self._data,))


def _ordered(values: set[str], order: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in order if v in values)


@dataclass(frozen=True, kw_only=True)
class ComputeUnit:
    """One engine of a device (CPU cluster, GPU, DLA core, NPU, TPU) and the limits of what it runs.

    ``peak`` maps precision -> dense TOPS/TFLOPS for the precisions whose peak is published or derived;
    ``precisions`` lists every precision the unit runs (defaults to the keys of ``peak``), so a unit
    can run fp16 whose fp16 peak nobody publishes.
    """

    name: str
    kind: str
    runtime: str
    formats: tuple[str, ...]
    peak: Mapping[str, float] = field(default_factory=_FrozenMap)
    precisions: tuple[str, ...] = ()
    cores: int | None = None
    clock_ghz: float | None = None
    efficiency: Mapping[str, float] = field(default_factory=_FrozenMap)
    static_shapes: bool = False
    max_batch: int | None = None
    int8_only: bool = False
    notes: str = ""
    ops: OpSupport | None = None  # [units.NAME.ops]: the ONNX ops it runs (None: all), targets/ops.py
    published: tuple[PublishedFit, ...] = ()  # calibrations fitted to published measurements (targets/published.py)

    def published_fit(self, runtime: str, precision: str) -> PublishedFit | None:
        """The calibration fitted to published points for ``runtime`` at ``precision``, if there is one."""
        return next((f for f in self.published if (f.runtime, f.precision) == (runtime, precision)), None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "published", tuple(self.published))
        object.__setattr__(self, "peak", _FrozenMap(self.peak))
        object.__setattr__(self, "efficiency", _FrozenMap(self.efficiency))
        object.__setattr__(self, "formats", tuple(self.formats))
        precisions = set(self.precisions) | set(self.peak)
        object.__setattr__(self, "precisions", _ordered(precisions, PRECISIONS))
        for value, allowed, what in (
            ((self.kind,), KINDS, "kind"),
            ((self.runtime,), RUNTIMES, "runtime"),
            (self.formats, FORMATS, "format"),
            (tuple(precisions), PRECISIONS, "precision"),
        ):
            bad = [v for v in value if v not in allowed]
            if bad:
                raise TargetError(f"unit {self.name!r}: unknown {what} {bad[0]!r}; allowed: {', '.join(allowed)}")
        if self.int8_only and self.precisions not in ((), ("int8",)):
            raise TargetError(f"unit {self.name!r}: int8_only but runs {', '.join(self.precisions)}")


@dataclass(frozen=True, kw_only=True)
class Target:
    """A device profile: its compute units, memory and where the profile came from.

    ``verified`` is False when figures come from leaks or conflicting third-party reports.
    """

    name: str
    description: str
    units: tuple[ComputeUnit, ...]
    default_unit: str
    aliases: tuple[str, ...] = ()
    memory_gb: float | None = None
    memory_bandwidth_gbps: float | None = None
    source: str = ""
    verified: bool = True
    arch: str | None = None  # the CPU architecture as platform.machine() names it, e.g. "aarch64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        names = [u.name for u in self.units]
        if not names or len(set(names)) != len(names):
            raise TargetError(f"target {self.name!r}: unit names must be present and unique, got {names}")
        if self.default_unit not in names:
            raise TargetError(
                f"target {self.name!r}: default_unit {self.default_unit!r} is not a unit; units: {', '.join(names)}"
            )

    def unit(self, name: str) -> ComputeUnit:
        """The compute unit called ``name`` (case-insensitive).

        Example:
            >>> from edgekit.targets import load_target
            >>> load_target("jetson-agx-orin").unit("DLA0").kind
            'dla'
        """
        for unit in self.units:
            if unit.name == name.lower():
                return unit
        units = ", ".join(u.name for u in self.units)
        raise TargetError(f"target {self.name!r} has no unit {name!r}; units: {units}")

    @property
    def formats(self) -> tuple[str, ...]:
        """Every model format some unit runs, in the order of :data:`FORMATS`.

        Example:
            >>> from edgekit.targets import load_target
            >>> load_target("jetson").formats
            ('onnx', 'tensorrt')
        """
        return _ordered({f for u in self.units for f in u.formats}, FORMATS)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Every precision some unit runs, in the order of :data:`PRECISIONS`.

        Example:
            >>> from edgekit.targets import load_target
            >>> load_target("coral").precisions
            ('int8',)
        """
        return _ordered({p for u in self.units for p in u.precisions}, PRECISIONS)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for a bundle manifest or ``edgekit targets show``).

        Example:
            >>> from edgekit.targets import load_target
            >>> load_target("coral").to_dict()["units"][0]["peak"]
            {'int8': 4.0}
        """
        units = [
            {
                "name": u.name, "kind": u.kind, "runtime": u.runtime, "formats": list(u.formats),
                "peak": dict(u.peak), "precisions": list(u.precisions), "cores": u.cores,
                "clock_ghz": u.clock_ghz, "efficiency": dict(u.efficiency), "static_shapes": u.static_shapes,
                "max_batch": u.max_batch, "int8_only": u.int8_only, "notes": u.notes,
                **({"ops": u.ops.to_json()} if u.ops is not None else {}),
            }
            for u in self.units
        ]
        return {
            "name": self.name, "aliases": list(self.aliases), "description": self.description,
            "memory_gb": self.memory_gb, "memory_bandwidth_gbps": self.memory_bandwidth_gbps,
            "units": units, "default_unit": self.default_unit, "source": self.source, "verified": self.verified,
            "arch": self.arch,
        }


# ---------------------------------------------------------------------------------------------------
# Loading: every check names the file and the dotted field path, in one line.

_MISSING: Any = object()


# Stated upper limits of a profile's numbers (docs/targets.md): a figure above them is a typo or a
# hostile file, never a device. ``peak`` is each precision's peak throughput in TFLOPS/TOPS.
RANGES: dict[str, float] = {
    "clock_ghz": 10.0, "cores": 4096, "max_batch": 1 << 16, "memory_gb": 1 << 16,
    "memory_bandwidth_gbps": 100_000.0, "peak": 100_000.0, "points": 1_000_000, "median_error": 100.0,
    "cv_median_error": 100.0,
}
MAX_TARGET_FILE_BYTES = 1 << 20  # a profile is a page of TOML; larger files are refused before parsing


class _Table:
    """A TOML table being read; remembers the file and its field path for error messages."""

    def __init__(self, file: str, data: Mapping[str, Any], path: str = "") -> None:
        self.file, self.data, self.path = file, data, path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> NoReturn:
        raise TargetError(f"{self.file}: {self.where(key)}: {message}")

    def check_keys(self, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        allowed = required + optional
        for key in self.data:
            if key not in allowed:
                self.fail(key, f"unknown field; allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in self.data:
                self.fail(key, "missing required field")

    def get(self, key: str, expected: str, check: Any, default: Any = _MISSING) -> Any:
        if key not in self.data:
            assert default is not _MISSING, f"{key} is required: check_keys runs first"
            return default
        value = self.data[key]
        if not check(value):
            self.fail(key, f"expected {expected}, got {_show(value)}")
        return value

    def string(self, key: str, default: Any = _MISSING) -> str:
        return self.get(key, "a string", lambda v: isinstance(v, str), default)

    def name(self, key: str, default: Any = _MISSING) -> str:
        return self.get(key, "a lowercase name (a-z, 0-9, '-', '_', '.')", _is_name, default)

    def boolean(self, key: str, default: bool) -> bool:
        return self.get(key, "true or false", lambda v: isinstance(v, bool), default)

    def ceiling(self, key: str) -> float:
        """The stated upper limit of a numeric field (RANGES; the table's own name for ``peak`` entries)."""
        return RANGES.get(key, RANGES.get(self.path.rsplit(".", 1)[-1], math.inf))

    def positive(self, key: str, default: Any = _MISSING) -> float | None:
        value = self.get(key, "a positive number", lambda v: _is_number(v) and v > 0, default)
        return None if value is None else float(self.within(key, value))

    def count(self, key: str, default: Any = _MISSING) -> int | None:
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
        value = self.get(key, "a whole number >= 1", ok, default)
        return None if value is None else self.within(key, value)

    def within(self, key: str, value: Any) -> Any:
        """``value`` unless above the field's stated limit in RANGES (the table's name for ``peak`` entries)."""
        top = RANGES.get(key, RANGES.get(self.path.rsplit(".", 1)[-1], math.inf))
        if value > top:
            self.fail(key, f"{value:g} is above the stated limit of {top:g} for this field (RANGES in targets/target.py)")
        return value

    def choices(self, key: str, allowed: tuple[str, ...], default: Any = _MISSING) -> tuple[str, ...]:
        values = self.get(key, "a list of strings", lambda v: isinstance(v, list), default)
        for i, value in enumerate(values):
            if value not in allowed:
                raise TargetError(
                    f"{self.file}: {self.where(key)}[{i}]: unknown value {_show(value)}; allowed: {', '.join(allowed)}"
                )
        if len(set(values)) != len(values):
            self.fail(key, f"duplicate values in {values}")
        return tuple(values)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in allowed:
            self.fail(key, f"unknown value {_show(value)}; allowed: {', '.join(allowed)}")
        return value

    def table(self, key: str, default: Any = _MISSING) -> _Table:
        value = self.get(key, "a table", lambda v: isinstance(v, dict), default)
        return _Table(self.file, value, self.where(key))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(_NAME.match(value))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_unit(table: _Table, name: str) -> ComputeUnit:
    table.check_keys(
        ("kind", "runtime", "formats"),
        ("peak", "precisions", "cores", "clock_ghz", "efficiency", "static_shapes", "max_batch", "int8_only", "notes",
         "ops", "published"),
    )
    peak_table = table.table("peak", {})
    peak: dict[str, float] = {}
    for key in peak_table.data:
        if key not in PRECISIONS:
            peak_table.fail(key, f"unknown precision; allowed: {', '.join(PRECISIONS)}")
        peak[key] = peak_table.positive(key)  # type: ignore[assignment]
    precisions = table.choices("precisions", PRECISIONS, list(peak))
    extra = [p for p in peak if p not in precisions]
    if extra:
        table.fail("precisions", f"misses {extra[0]!r}, which has a peak")
    efficiency_table = table.table("efficiency", {})
    efficiency = {}
    for key in efficiency_table.data:
        if not _is_name(key):
            efficiency_table.fail(key, "op kinds must be lowercase names")
        efficiency[key] = efficiency_table.get(key, "a fraction in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)
    formats = table.choices("formats", FORMATS)
    runtime = table.choice("runtime", RUNTIMES)
    if not formats:
        table.fail("formats", "must list at least one format")
    if not set(_RUNTIME_FORMATS[runtime]) & set(formats):
        table.fail("runtime", f"{runtime!r} loads none of the unit's formats {list(formats)}")
    int8_only = table.boolean("int8_only", False)
    if int8_only and [p for p in precisions if p != "int8"]:
        table.fail("int8_only", f"is true but the unit runs {', '.join(precisions)}")
    return ComputeUnit(
        name=name,
        kind=table.choice("kind", KINDS),
        runtime=runtime,
        formats=formats,
        peak=peak,
        precisions=precisions,
        cores=table.count("cores", None),
        clock_ghz=table.positive("clock_ghz", None),
        efficiency=efficiency,
        static_shapes=table.boolean("static_shapes", False),
        max_batch=table.count("max_batch", None),
        int8_only=int8_only,
        notes=table.string("notes", ""),
        ops=read_ops(table.table("ops")) if "ops" in table.data else None,
        published=_read_published(table.table("published", {}), precisions),
    )


def _read_published(table: _Table, precisions: tuple[str, ...]) -> tuple[PublishedFit, ...]:
    """``[units.U.published.RUNTIME.PRECISION]`` tables (written by ``python -m edgekit.targets.published``)."""
    fits = []
    for runtime in table.data:
        per_runtime = table.table(runtime)
        for precision in per_runtime.data:
            if precision not in precisions:
                per_runtime.fail(precision, f"the unit does not run this precision; it runs {', '.join(precisions)}")
            fit = per_runtime.table(precision)
            fit.check_keys(("ms_per", "points", "models", "median_error", "sources"), ("cv_median_error",))
            terms = fit.table("ms_per")
            for key in terms.data:
                if key not in FEATURES:
                    terms.fail(key, f"unknown term; allowed: {', '.join(FEATURES)}")
            fits.append(PublishedFit(
                runtime=runtime, precision=precision,
                coefficients={k: terms.get(k, "a number >= 0", lambda v: _is_number(v) and v >= 0) for k in terms.data},
                points=fit.count("points"),  # type: ignore[arg-type]
                models=tuple(fit.get("models", "a list of strings", lambda v: isinstance(v, list))),
                median_error=fit.positive("median_error"),  # type: ignore[arg-type]
                cv_median_error=fit.positive("cv_median_error", None),
                sources=tuple(fit.get("sources", "a list of strings", lambda v: isinstance(v, list))),
            ))
    return tuple(fits)


def _read_target(table: _Table, source: str) -> Target:
    table.check_keys(
        ("name", "description", "units", "default_unit"),
        ("aliases", "memory_gb", "memory_bandwidth_gbps", "verified", "detect", "arch"),
    )
    name = table.name("name")
    description = table.string("description")
    units_table = table.table("units")
    if not units_table.data:
        table.fail("units", "must define at least one unit ([units.<name>] tables)")
    for unit_name in units_table.data:
        if not _is_name(unit_name):
            units_table.fail(unit_name, "unit names must be lowercase (a-z, 0-9, '-', '_', '.')")
    units = tuple(_read_unit(units_table.table(key), key) for key in units_table.data)
    for unit in units:
        if unit.ops is not None and unit.ops.fallback is not None and unit.ops.fallback not in units_table.data:
            units_table.table(unit.name).table("ops").fail("fallback", f"{unit.ops.fallback!r} is not a unit")
    default_unit = table.string("default_unit")
    if default_unit not in units_table.data:
        table.fail("default_unit", f"{default_unit!r} is not a unit; units: {', '.join(units_table.data)}")
    aliases = table.get("aliases", "a list of lowercase names", lambda v: isinstance(v, list), [])
    for i, alias in enumerate(aliases):
        if not _is_name(alias):
            raise TargetError(f"{table.file}: aliases[{i}]: expected a lowercase name, got {_show(alias)}")
    return Target(
        name=name,
        aliases=tuple(aliases),
        description=description,
        memory_gb=table.positive("memory_gb", None),
        memory_bandwidth_gbps=table.positive("memory_bandwidth_gbps", None),
        units=units,
        default_unit=default_unit,
        source=source,
        verified=table.boolean("verified", True),
        arch=table.name("arch", None),
    )


def load_target_file(path: str | Path) -> Target:
    """Read and validate one target profile (TOML); raises :class:`TargetError` naming file and field.

    A profile with ``detect = true`` (the bundled ``host.toml``) is completed from this machine by
    :func:`apply_host`.

    Example:
        >>> from pathlib import Path
        >>> import edgekit.targets
        >>> t = load_target_file(Path(edgekit.targets.__file__).with_name("raspberry-pi-5.toml"))
        >>> t.name, t.default_unit, t.unit("cpu").peak["fp32"]
        ('raspberry-pi-5', 'cpu', 0.1536)
    """
    file = str(path)
    try:
        with open(path, "rb") as handle:
            if not os.path.isfile(path):
                raise TargetError(f"{file}: not a regular file (a target profile is a TOML file)")
            raw = handle.read(MAX_TARGET_FILE_BYTES + 1)
        if len(raw) > MAX_TARGET_FILE_BYTES:
            raise TargetError(f"{file}: larger than the {MAX_TARGET_FILE_BYTES >> 10} KiB a target profile may be")
        data = tomllib.loads(raw.decode("utf-8"))
    except RecursionError:
        raise TargetError(f"{file}: invalid TOML: nested too deeply") from None
    except FileNotFoundError:
        raise TargetError(f"{file}: no such target file") from None
    except OSError as exc:
        raise TargetError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TargetError(f"{file}: invalid TOML: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{file}: invalid TOML: {exc}") from None
    table = _Table(file, data)
    target = _read_target(table, file)
    if table.boolean("detect", False):
        target = apply_host(target)
    return target


def apply_host(target: Target, info: HostInfo | None = None) -> Target:
    """Fill the CPU units of ``target`` from this machine (:func:`edgekit.targets.host.detect_host`, or
    ``info``); values the TOML sets explicitly are kept.

    Example:
        >>> from edgekit.targets import load_target
        >>> load_target("host").unit("cpu").peak["fp32"] > 0
        True
    """
    if info is None:
        from .host import detect_host  # imported on use: `import edgekit.targets` stays cheap

        info = detect_host()
    units = []
    for unit in target.units:
        if unit.kind == "cpu":
            pinned = replace(
                info,
                logical_cores=unit.cores or info.logical_cores,
                clock_ghz=unit.clock_ghz or info.clock_ghz,
            )
            peak = dict(unit.peak) or pinned.peak
            unit = replace(
                unit,
                cores=pinned.logical_cores,
                clock_ghz=pinned.clock_ghz,
                peak=peak,
                precisions=unit.precisions or tuple(peak),
                notes=unit.notes or pinned.notes,
            )
        units.append(unit)
    memory = f", {info.memory_gb:g} GiB" if info.memory_gb else ""
    return replace(
        target,
        units=tuple(units),
        description=f"{target.description}: {info.cpu_model}, {info.logical_cores} logical cores{memory}",
        memory_gb=target.memory_gb or info.memory_gb,
    )

