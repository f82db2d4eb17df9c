"""Model I/O described once, as data: every exporter, validator and runtime reads a TensorSpec.

A dimension is an ``int`` (fixed) or a ``str`` (a named dynamic axis such as ``"batch"``). Within one
call, every dimension with the same name must take the same size.

Example:
    >>> import numpy as np
    >>> spec = TensorSpec("image", ("batch", 3, 32, 32), "float32")
    >>> spec.check(np.zeros((2, 3, 32, 32), np.float32))
    >>> spec.concrete({"batch": 4})
    (4, 3, 32, 32)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .errors import BundleError, InputMismatchError
from .limits import check_array_bytes

__all__ = ["Dim", "TensorSpec", "check_inputs", "random_inputs", "specs_from_json", "specs_to_json"]

Dim = Union[int, str]

_DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (named dynamic axes allowed) and numpy dtype name of one model input or output."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {_DTYPES}")
        object.__setattr__(self, "shape", tuple(self.shape))
        for dim in self.shape:
            if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and dim < 0):
                raise ValueError(f"tensor {self.name!r}: dimension {dim!r} must be an int >= 0 or an axis name")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Position -> name of each dynamic dimension (the form torch.onnx.export takes)."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete(self, sizes: Mapping[str, int] | None = None, default: int = 1) -> tuple[int, ...]:
        """The shape with each named axis replaced by ``sizes[name]`` (or ``default``)."""
        sizes = sizes or {}
        return tuple(d if isinstance(d, int) else int(sizes.get(d, default)) for d in self.shape)

    def check(self, array: np.ndarray, bound: dict[str, int] | None = None) -> None:
        """Raise InputMismatchError unless ``array`` fits this spec; records dynamic sizes in ``bound``."""
        if not isinstance(array, np.ndarray):
            raise InputMismatchError(f"input {self.name!r}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != np.dtype(self.dtype):
            raise InputMismatchError(f"input {self.name!r}: expected dtype {self.dtype}, got {array.dtype}")
        if array.ndim != len(self.shape):
            raise InputMismatchError(
                f"input {self.name!r}: expected rank {len(self.shape)} {self.shape_str()}, "
                f"got shape {tuple(array.shape)}"
            )
        bound = {} if bound is None else bound
        for axis, (want, got) in enumerate(zip(self.shape, array.shape)):
            if isinstance(want, int):
                if want != got:
                    raise InputMismatchError(
                        f"input {self.name!r}: dimension {axis} must be {want} {self.shape_str()}, "
                        f"got shape {tuple(array.shape)}"
                    )
            elif bound.setdefault(want, got) != got:
                raise InputMismatchError(
                    f"input {self.name!r}: axis {want!r} is {got} here but {bound[want]} in another input"
                )

    def shape_str(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "spec") -> "TensorSpec":
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: invalid tensor spec {data!r} (expected an object with 'name', 'shape', 'dtype')")
        try:
            return cls(str(data["name"]), tuple(data["shape"]), str(data.get("dtype", "float32")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: invalid tensor spec {dict(data)!r} ({exc})") from exc


def specs_to_json(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [s.to_json() for s in specs]


def specs_from_json(items: Sequence[Mapping[str, Any]], where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(items, list):
        raise BundleError(f"{where}: expected a list of tensor specs")
    return tuple(TensorSpec.from_json(item, where) for item in items)


def check_inputs(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Check a feed dict against the specs: missing or unknown names, dtypes, ranks and sizes.

    Example:
        >>> import numpy as np
        >>> check_inputs([TensorSpec("x", ("batch", 4))], {"x": np.zeros((2, 4), np.float32)})
    """
    expected = [s.name for s in specs]
    unknown = [name for name in feeds if name not in expected]
    if unknown:
        raise InputMismatchError(f"unknown input {unknown[0]!r}: the model's inputs are {expected}")
    missing = [name for name in expected if name not in feeds]
    if missing:
        raise InputMismatchError(f"missing input {missing[0]!r}: the model's inputs are {expected}")
    bound: dict[str, int] = {}
    for spec in specs:
        spec.check(feeds[spec.name], bound)


def random_inputs(
    specs: Sequence[TensorSpec],
    sizes: Mapping[str, int] | None = None,
    *,
    rng: np.random.Generator | None = None,
    seed: int = 0,
    int_high: int = 2,
) -> dict[str, np.ndarray]:
    """Random feeds for ``specs``: normal floats, uniform ints in [0, int_high), random bools; each named
    axis takes ``sizes[name]`` (1 when absent). The one input generator of edgekit (validation, timing,
    bench, profile); pass ``rng`` to draw several feeds from one stream.

    Example:
        >>> feeds = random_inputs([TensorSpec("x", ("batch", 3, "height", 8))], {"batch": 2, "height": 4})
        >>> feeds["x"].shape, feeds["x"].dtype
        ((2, 3, 4, 8), dtype('float32'))
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = spec.concrete(sizes)
        check_array_bytes(shape, spec.dtype, f"input {spec.name!r}")  # before allocating it
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            feeds[spec.name] = rng.integers(0, int_high, size=shape).astype(spec.dtype)
    return feeds
