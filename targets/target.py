"""What a device is, as data: compute units with peak throughput per precision, memory, formats.

A target profile is a TOML file (``targets/*.toml`` or your own); :func:`edgekit.targets.target_file.load_target_file` reads it and
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

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from edgekit.runtimes.errors import TargetError
from edgekit.runtimes.formats import FORMAT_NAMES, RUNTIME_FORMATS, RUNTIME_NAMES
from edgekit.runtimes.precision import PRECISIONS

from .published_fit import PublishedFit

from .ops import OpSupport

__all__ = [
    "PRECISIONS",
    "KINDS",
    "FORMATS",
    "RUNTIMES",
    "ComputeUnit",
    "Target",
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
