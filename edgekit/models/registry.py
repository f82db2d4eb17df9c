"""Turn a ``--model`` reference into a plain torch module plus its I/O description.

A reference is one of:
- a built-in name (``edgekit export --model NAME``; see :data:`BUILTINS`),
- ``package.module:factory``, a callable returning an ``nn.Module``,
- a ``.pt2`` archive written by ``torch.export.save``.

Example:
    >>> source = resolve_model(ModelRequest("mobilenet-v3-small"))
    >>> source.inputs[0].shape
    ('batch', 3, 224, 224)
"""

from __future__ import annotations

import importlib
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

__all__ = ["ModelRequest", "ModelSource", "resolve_model", "parse_shape", "load_samples", "BUILTINS", "DEFAULT_MODEL"]


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for; model families read the fields they understand."""

    ref: str | None = None
    input_shape: tuple[int, ...] | None = None
    checkpoint: Path | None = None  # weights file for families that take one (ofa-mbv3)
    subnet: str | None = None  # a subnet config: JSON text or a .json file (ofa-mbv3)
    space: str | None = None  # search space name (ofa-mbv3; detected from the checkpoint otherwise)
    calib_data: Path | None = None  # .npy samples (N, ...): BN recalibration and int8 calibration


@dataclass(frozen=True)
class ModelSource:
    """A model ready to export: an eval-mode module, its input specs and example inputs."""

    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    example_inputs: tuple[torch.Tensor, ...]
    name: str
    output_names: tuple[str, ...] = ("output",)
    task: str = "generic"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The family's own data, when it has some: ``calibration(n)`` returns n feed dicts for int8
    # calibration; ``evaluation()`` returns held-out feed dicts and their labels (accuracy checks).
    calibration: Callable[[int], list[dict[str, Any]]] | None = None
    evaluation: Callable[[], tuple[list[dict[str, Any]], Any]] | None = None


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1,3,224,224"`` into a tuple of positive ints.

    Example:
        >>> parse_shape("1,3,32,32")
        (1, 3, 32, 32)
    """
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: expected comma-separated integers such as 1,3,224,224") from None
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"--input-shape {text!r}: expected comma-separated positive integers such as 1,3,224,224")
    return shape


def load_samples(path: Path, spec: TensorSpec):
    """``--calib-data``: a .npy of samples stacked on the first axis, each shaped like one ``spec`` item.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
        >>> np.save(f, np.zeros((5, 3, 8, 8)))
        >>> load_samples(f, TensorSpec("image", ("batch", 3, 8, 8))).shape
        (5, 3, 8, 8)
    """
    import numpy as np

    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--calib-data {path}: not a readable .npy file ({exc})") from exc
    sample_shape = spec.concrete({}, default=1)[1:]
    if data.ndim != len(spec.shape) or tuple(data.shape[1:]) != tuple(sample_shape):
        raise UsageError(
            f"--calib-data {path}: expected samples shaped (N, {', '.join(map(str, sample_shape))}) for input "
            f"{spec.name!r}, got {tuple(data.shape)}"
        )
    return data.astype(spec.dtype, copy=False)


def _image_source(module: nn.Module, shape: tuple[int, ...], name: str, provenance: Mapping[str, Any]) -> ModelSource:
    """A single-input model whose first axis is a dynamic batch."""
    spec = TensorSpec("input", ("batch", *shape[1:]), "float32")
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return ModelSource(module.eval(), (spec,), (example,), name, ("output",), "classification", dict(provenance))


def _mobilenet_v3_small(request: ModelRequest) -> ModelSource:
    from .mobilenet import INPUT_SHAPE, mobilenet_v3_small

    shape = request.input_shape or INPUT_SHAPE
    provenance = {"model": "builtin:mobilenet-v3-small", "weights": "random init, seed 0 (untrained placeholder)"}
    return _image_source(mobilenet_v3_small(num_classes=10), shape, "mobilenet-v3-small", provenance)


def _ofa_mbv3(request: ModelRequest) -> ModelSource:
    from .ofa_family import ofa_source

    return ofa_source(request)


# Built-in model name -> factory. Families register here. mobilenet-v3-small (random weights) stays as a
# realistic ~1 ms network for runtime benchmarks.
BUILTINS: dict[str, Callable[[ModelRequest], ModelSource]] = {
    "mobilenet-v3-small": _mobilenet_v3_small,
    "ofa-mbv3": _ofa_mbv3,
}
# The trained once-for-all supernet's largest subnet (99.0% held-out top-1 on the shapes task).
DEFAULT_MODEL = "ofa-mbv3"


def _from_factory(ref: str, request: ModelRequest) -> ModelSource:
    module_name, _, attr = ref.partition(":")
    if str(Path.cwd()) not in sys.path:  # let `--model mypkg.models:build` find the user's own code
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"--model {ref}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model {ref}: module {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as exc:
        raise UsageError(f"--model {ref}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {ref}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    shape = request.input_shape or getattr(model, "input_shape", None)
    if shape is None and isinstance(getattr(model, "example_input", None), torch.Tensor):
        shape = tuple(model.example_input.shape)
    if shape is None:
        raise UsageError(
            f"--model {ref}: no input shape; pass --input-shape 1,3,224,224 or give the module an "
            "`input_shape` attribute"
        )
    return _image_source(model, tuple(int(d) for d in shape), attr, {"model": ref})


class _ExportedProgramModule(nn.Module):
    """Wrap ``ExportedProgram.module()``, whose ``train()`` raises, so the TorchScript exporter takes it."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "program", program)  # not a child: eval()/train() must not reach it

    def train(self, mode: bool = True) -> "_ExportedProgramModule":
        return self

    def forward(self, *args):
        return self.program(*args)


def _from_pt2(path: Path, request: ModelRequest) -> ModelSource:
    if not path.is_file():
        raise UsageError(f"--model {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
    except Exception as exc:
        raise UsageError(f"--model {path}: not a torch.export archive ({type(exc).__name__}: {exc})") from exc
    args = program.example_inputs[0] if program.example_inputs else ()
    if len(args) != 1 or not isinstance(args[0], torch.Tensor):
        raise UsageError(f"--model {path}: expected a program with one tensor input, found {len(args)} inputs")
    shape = tuple(args[0].shape)
    if request.input_shape and tuple(request.input_shape) != shape:
        raise UsageError(f"--model {path}: the program was exported for shape {shape}, not {request.input_shape}")
    module = program.module()
    for param in module.parameters():
        param.requires_grad_(False)
    # torch.export archives hold static shapes unless exported with dynamic_shapes: keep them static.
    spec = TensorSpec("input", shape, "float32")
    return ModelSource(
        _ExportedProgramModule(module), (spec,), (args[0],), path.stem, ("output",), "generic",
        {"model": str(path)},
    )


def resolve_model(request: ModelRequest) -> ModelSource:
    """Resolve ``request.ref`` (None means the default built-in) into a :class:`ModelSource`."""
    ref = request.ref or DEFAULT_MODEL
    if ref in BUILTINS:
        return BUILTINS[ref](request)
    if ref.endswith(".pt2"):
        return _from_pt2(Path(ref), request)
    if ":" in ref:
        return _from_factory(ref, request)
    import difflib

    close = difflib.get_close_matches(ref, list(BUILTINS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(
        f"--model {ref!r} is not a built-in model{hint} (built-ins: {', '.join(BUILTINS)}; "
        "or pass package.module:factory, or a .pt2 file)"
    )
