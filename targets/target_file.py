"""Reading a target profile (TOML) into a :class:`~edgekit.targets.target.Target`: strict checks that name
the file and the dotted field path in one line, stated limits on sizes and numbers, and the host profile
completed from this machine (:func:`apply_host`).

Example:
    >>> from pathlib import Path
    >>> import edgekit.targets
    >>> load_target_file(Path(edgekit.targets.__file__).with_name("raspberry-pi-5.toml")).default_unit
    'cpu'
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NoReturn

from edgekit.runtimes.errors import TargetError

from .ops import read_ops
from .published_fit import FEATURES, PublishedFit
from .target import _NAME, _RUNTIME_FORMATS, FORMATS, KINDS, PRECISIONS, RUNTIMES, ComputeUnit, Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from .host import HostInfo

__all__ = ["load_target_file", "apply_host", "RANGES", "MAX_TARGET_FILE_BYTES"]


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

