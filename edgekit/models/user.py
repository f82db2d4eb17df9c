"""Models given as code or files: a factory (``package.module:factory`` or ``path/to/file.py:factory``),
a ``.pt2`` archive written by ``torch.export.save`` (loaded without running code unless trusted), and the
built-in MobileNetV3-Small; plus the ``--input-shape`` / ``--input-names`` / ``--output-names`` /
``--dynamic`` options that describe their I/O.

A user module's I/O comes from the module: inputs are named after ``forward``'s arguments (a single
``x``/``input`` stays ``input``), outputs after the keys of a returned dict; ``--input-names`` /
``--output-names`` override both, and ``--input-shape NAME=SHAPE`` gives each input its shape.

Example:
    >>> source = mobilenet_source(ModelRequest("mobilenet-v3-small"))
    >>> source.inputs[0].shape, source.task
    (('batch', 3, 224, 224), 'classification')
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from edgekit.exporters.base import ExportGraph
from edgekit.exporters.parity import output_names_of, run_example
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

from .source import ModelRequest, ModelSource

__all__ = [
    "factory_source", "pt2_source", "mobilenet_source", "is_factory_ref",
    "parse_shape", "parse_input_shapes", "parse_names", "parse_dynamic",
]


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


def _shape_text(shape: Sequence[int]) -> str:
    return ",".join(str(d) for d in shape)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def parse_input_shapes(texts: Sequence[str]) -> tuple[tuple[int, ...] | None, dict[str, tuple[int, ...]]]:
    """Repeated ``--input-shape``: one bare shape (one-input models) or ``NAME=SHAPE`` for every input.

    Example:
        >>> parse_input_shapes(["image=1,3,8,8", "mask=1,1,8,8"])
        (None, {'image': (1, 3, 8, 8), 'mask': (1, 1, 8, 8)})
        >>> parse_input_shapes(["1,3,8,8"])
        ((1, 3, 8, 8), {})
    """
    bare: tuple[int, ...] | None = None
    named: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, sep, shape_text = text.rpartition("=")
        name = name.strip()
        if (bare is not None or (named and not sep)) or (sep and not name):
            raise UsageError(f"--input-shape {text}: give one bare shape for a one-input model, or NAME=SHAPE for each input")
        if name in named:
            raise UsageError(f"--input-shape {text}: input {name!r} has a shape already")
        if sep:
            named[name] = parse_shape(shape_text)
        else:
            bare = parse_shape(text)
    return bare, named


def parse_names(text: str, option: str) -> tuple[str, ...]:
    """``--input-names a,b`` / ``--output-names x,y``: distinct, non-empty, comma-separated.

    Example:
        >>> parse_names("logits, embedding", "--output-names")
        ('logits', 'embedding')
    """
    names = tuple(part.strip() for part in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise UsageError(f"{option} {text}: expected distinct comma-separated names such as image,mask")
    return names


def parse_dynamic(text: str | None) -> bool:
    """``--dynamic hw``: whether height and width (the last two axes of image inputs) are dynamic.

    Example:
        >>> parse_dynamic("hw")
        True
    """
    if text is None:
        return False
    if text.strip().lower() != "hw":
        raise UsageError(f"--dynamic {text}: expected hw (the last two axes of image inputs become height and "
                         "width; the batch axis is always dynamic)")
    return True


# One input named like this in forward keeps the name edgekit always gave it (device apps feed "input").
_GENERIC_INPUT_NAMES = frozenset({"x", "input", "inp", "inputs"})
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.int64: "int64", torch.int32: "int32",
                torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}


def _examples(shapes: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(*shape, generator=torch.Generator().manual_seed(i)) for i, shape in enumerate(shapes))


def _input_names(forward_names: Sequence[str], request: ModelRequest) -> tuple[str, ...]:
    if request.input_names is not None:
        if len(request.input_names) != len(forward_names):
            raise UsageError(
                f"--input-names {','.join(request.input_names)}: the model takes {len(forward_names)} inputs "
                f"({', '.join(forward_names)}), got {_count(len(request.input_names), 'name')}"
            )
        return tuple(request.input_names)
    if len(forward_names) == 1 and forward_names[0] in _GENERIC_INPUT_NAMES:
        return ("input",)
    return tuple(forward_names)


def _output_names(own: tuple[str, ...], override: tuple[str, ...] | None) -> tuple[str, ...]:
    if override is None:
        return own
    if len(override) != len(own):
        raise UsageError(f"--output-names {','.join(override)}: the model returns {len(own)} outputs "
                         f"({', '.join(own)}), got {_count(len(override), 'name')}")
    return tuple(override)


def _check_hw(names: Sequence[str], examples: Sequence[torch.Tensor]) -> None:
    """``--dynamic hw`` needs image-like inputs that share one height x width."""
    sizes = {tuple(e.shape[-2:]) for e in examples if e.dim() >= 3}
    shapes = ", ".join(f"{n}={tuple(e.shape)}" for n, e in zip(names, examples))
    if not sizes:
        raise UsageError(f"--dynamic hw: no input has height and width axes ({shapes})")
    if len(sizes) > 1:
        raise UsageError(f"--dynamic hw: the inputs differ in height x width ({shapes}); dynamic axes are shared")


def _input_specs(names: Sequence[str], examples: Sequence[torch.Tensor], *, batch: bool, hw: bool) -> tuple[TensorSpec, ...]:
    specs = []
    for name, example in zip(names, examples):
        dims: list[int | str] = [int(d) for d in example.shape]
        if batch and dims:
            dims[0] = "batch"
        if hw and len(dims) >= 3:
            dims[-2:] = ["height", "width"]
        if example.dtype not in _DTYPE_NAMES:
            raise UsageError(f"input {name!r}: dtype {example.dtype} is not one of {sorted(_DTYPE_NAMES.values())}")
        specs.append(TensorSpec(name, tuple(dims), _DTYPE_NAMES[example.dtype]))
    return tuple(specs)


def _module_source(
    module: nn.Module, forward_names: Sequence[str], examples: tuple[torch.Tensor, ...], request: ModelRequest,
    name: str, provenance: Mapping[str, Any], *, batch: bool = True,
) -> ModelSource:
    """A module's source with I/O named by the model (or the request), a dynamic batch unless ``batch``
    is False, and ``task`` from the module's ``task`` attribute (else "generic": nothing is assumed)."""
    module = module.eval()
    if request.dynamic_hw:
        _check_hw(forward_names, examples)
    names = _input_names(forward_names, request)
    specs = _input_specs(names, examples, batch=batch, hw=request.dynamic_hw)
    outputs = _output_names(output_names_of(run_example(module, names, examples)), request.output_names)
    task = getattr(module, "task", None)
    graph = ExportGraph("model", module, specs, tuple(examples), outputs)
    return ModelSource(name, {"model": graph}, task if isinstance(task, str) and task else "generic", dict(provenance))


def _forward_params(module: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """``forward``'s positional parameters: (required, optional, whether it takes ``*args``)."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return (), (), True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = tuple(p.name for p in positional if p.default is p.empty)
    optional = tuple(p.name for p in positional if p.default is not p.empty)
    return required, optional, any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _named_shapes(ref: str, named: Mapping[str, tuple[int, ...]], module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """``--input-shape NAME=SHAPE`` per input, in forward's order (inputs are passed by position)."""
    required, optional, var_args = _forward_params(module)
    params = required + optional
    unknown = [n for n in named if n not in params]
    if unknown and not var_args:
        raise UsageError(f"--input-shape {unknown[0]}={_shape_text(named[unknown[0]])}: the model has no input "
                         f"{unknown[0]!r} (its inputs: {', '.join(params)})")
    missing = [n for n in required if n not in named]
    if missing:
        raise UsageError(f"--model {ref}: no input shape for {missing[0]!r}; pass --input-shape {missing[0]}=...")
    given = [n for n in params if n in named]
    skipped = next((n for n in params[: len(given)] if n not in named), None)
    if skipped is not None or (unknown and len(given) < len(params)):
        skipped = skipped or params[len(given)]
        raise UsageError(f"--model {ref}: forward takes {skipped!r} before the inputs given; pass --input-shape {skipped}=... too")
    return [(n, tuple(named[n])) for n in given + unknown]


def _input_shapes(ref: str, module: nn.Module, request: ModelRequest) -> list[tuple[str, tuple[int, ...]]]:
    """Each input's name (from forward) and example shape: the request's, else the module's
    ``input_shape`` / ``example_input`` / ``input_shapes`` attribute."""
    named = dict(request.input_shapes)
    if not named and request.input_shape is None and isinstance(getattr(module, "input_shapes", None), Mapping):
        named = {str(k): tuple(int(d) for d in v) for k, v in module.input_shapes.items()}
    if named:
        return _named_shapes(ref, named, module)
    required, optional, _ = _forward_params(module)
    shape = request.input_shape or getattr(module, "input_shape", None)
    if shape is None and isinstance(getattr(module, "example_input", None), torch.Tensor):
        shape = tuple(module.example_input.shape)
    if len(required) > 1:
        example = f"--input-shape {required[0]}=1,3,224,224 --input-shape {required[1]}=..."
        where = f"--input-shape {_shape_text(shape)}" if request.input_shape else f"--model {ref}"
        raise UsageError(f"{where}: the model takes {len(required)} inputs ({', '.join(required)}); give one shape "
                         f"per input as {example}")
    if shape is None:
        raise UsageError(
            f"--model {ref}: no input shape; pass --input-shape 1,3,224,224 or give the module an "
            "`input_shape` attribute"
        )
    params = required + optional
    return [(params[0] if params else "input", tuple(int(d) for d in shape))]


def mobilenet_source(request: ModelRequest) -> ModelSource:
    """``--model mobilenet-v3-small``: random weights (seed 0), a realistic ~1 ms network for runtime benchmarks."""
    from .mobilenet import INPUT_SHAPE, mobilenet_v3_small

    shape = request.input_shape or INPUT_SHAPE
    provenance = {"model": "builtin:mobilenet-v3-small", "weights": "random init, seed 0 (untrained placeholder)"}
    source = _module_source(mobilenet_v3_small(num_classes=10), ["input"], _examples([shape]), request,
                            "mobilenet-v3-small", provenance)
    return replace(source, task="classification")  # the family is a 10-class classifier


def _import_file(ref: str, path: Path):
    """Import ``path/to/file.py`` by its path (its folder joins sys.path, so its own imports work)."""
    if not path.is_file():
        raise UsageError(f"--model {ref}: no such file")
    path = path.resolve()
    module_name = f"_edgekit_model_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--model {ref}: cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(f"--model {ref}: cannot import {path} ({type(exc).__name__}: {exc})") from exc
    return module


def _import_module(ref: str, module_name: str):
    if str(Path.cwd()) not in sys.path:  # let `--model mypkg.models:build` find the user's own code
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"--model {ref}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc


def is_factory_ref(ref: str) -> bool:
    """Whether ``ref`` is spelled ``location:attribute`` (a factory in a module or a .py file).

    Example:
        >>> is_factory_ref("mypkg.models:build"), is_factory_ref("model.pt2")
        (True, False)
    """
    location, _, attr = ref.rpartition(":")
    return bool(location and attr)


def factory_source(request: ModelRequest) -> ModelSource:
    """``--model package.module:factory`` or ``path/to/file.py:factory``: the module the factory returns."""
    ref = str(request.ref)
    location, _, attr = ref.rpartition(":")
    module = _import_file(ref, Path(location)) if location.endswith(".py") else _import_module(ref, location)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model {ref}: module {location!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as exc:
        raise UsageError(f"--model {ref}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {ref}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    shapes = _input_shapes(ref, model, request)
    examples = _examples([shape for _, shape in shapes])
    return _module_source(model, [name for name, _ in shapes], examples, request, attr, {"model": ref})


class _ExportedProgramModule(nn.Module):
    """Wrap ``ExportedProgram.module()``, whose ``train()`` raises, so the TorchScript exporter takes it."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "program", program)  # not a child: eval()/train() must not reach it

    def train(self, mode: bool = True) -> "_ExportedProgramModule":
        return self

    def forward(self, *args):
        return self.program(*args)


def _program_inputs(program, path: Path) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Names (forward's, as the program recorded them) and example tensors of a program's inputs."""
    names = list(program.graph_signature.user_inputs)
    args, kwargs = program.example_inputs if program.example_inputs else ((), {})
    if kwargs or len(args) != len(names) or not all(isinstance(a, torch.Tensor) for a in args):
        raise UsageError(f"--model {path}: expected a program whose {len(names)} input(s) are tensors passed by "
                         "position, with its sample inputs saved (torch.export.save does both)")
    return [str(n) for n in names], tuple(a.detach().clone() for a in args)


def pt2_source(request: ModelRequest) -> ModelSource:
    """``--model program.pt2``: a torch.export archive, with the static shapes it was exported with."""
    from .pt2 import load_program

    path = Path(str(request.ref))
    if request.dynamic_hw:
        raise UsageError(f"--dynamic hw: {path} is a torch.export program, which keeps the shapes it was exported with")
    program = load_program(path, trust=request.trust_model_file)
    names, examples = _program_inputs(program, path)
    wanted = [request.input_shape] if request.input_shape else [request.input_shapes.get(n) for n in names]
    for name, example, shape in zip(names, examples, wanted):
        if shape is not None and tuple(shape) != tuple(example.shape):
            raise UsageError(f"--model {path}: the program was exported for {name} shape {tuple(example.shape)}, "
                             f"not {tuple(shape)}")
    module = program.module(check_guards=False)  # guards are code in the file; inputs keep the exported shapes
    for param in module.parameters():
        param.requires_grad_(False)
    # torch.export archives hold static shapes unless exported with dynamic_shapes: keep them static.
    return _module_source(_ExportedProgramModule(module), names, examples, request, path.stem,
                          {"model": str(path)}, batch=False)
