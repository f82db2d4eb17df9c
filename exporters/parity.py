"""What every exporter checks its file against: the torch model, run on the same inputs.

Format-independent pieces of export: name and flatten a model's outputs as exporters write them, run a
model on its examples, pick the sizes of dynamic axes to try, and compare any runtime
:class:`~edgekit.runtimes.session.Session` with torch (:func:`check_parity`), raising
:class:`ValidationError` above tolerance so that a wrong artifact is never saved silently.

Example:
    >>> import numpy as np, torch
    >>> from edgekit.runtimes.session import Session
    >>> net = torch.nn.Linear(4, 2).eval()
    >>> class Torch(Session):                      # a "runtime" that runs the model itself
    ...     def _run(self, feeds):
    ...         return {"y": net(torch.from_numpy(feeds["x"])).detach().numpy()}
    >>> spec = (TensorSpec("x", ("batch", 4)),)
    >>> check_parity(Torch(spec, (TensorSpec("y", ("batch", 2)),)), net, spec, trials=[{"batch": 1}]).passed
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import ExportError, ValidationError, one_line, require
from edgekit.runtimes.session import Session
from edgekit.runtimes.spec import TensorSpec, random_inputs

__all__ = ["ValidationReport", "check_parity", "output_names_of", "run_example", "trial_sizes", "flat_outputs"]


@dataclass(frozen=True)
class ValidationReport:
    """Largest absolute and relative error per output over every trial; ``passed`` against tolerance."""

    atol: float
    rtol: float
    trials: int
    max_abs: Mapping[str, float]
    max_rel: Mapping[str, float]
    passed: bool

    @property
    def worst_abs(self) -> float:
        return max(self.max_abs.values(), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "trials": self.trials,
            "max_abs_error": dict(self.max_abs),
            "max_rel_error": dict(self.max_rel),
            "passed": self.passed,
        }


def flat_outputs(result, name: str = "output") -> list[tuple[str, Any]]:
    """A model's outputs as ``(name, tensor)`` in the order exporters write them: dict keys name their
    values, sequence items are numbered, ``None`` is dropped.

    Example:
        >>> [name for name, _ in flat_outputs({"logits": 1, "extra": (2, None, 3)})]
        ['logits', 'extra_0', 'extra_2']
    """
    if isinstance(result, Mapping):
        items = [(str(key), value) for key, value in result.items()]
    elif isinstance(result, (tuple, list)):
        items = [(f"{name}_{i}", value) for i, value in enumerate(result)]
    else:
        return [(name, result)]
    flat: list[tuple[str, Any]] = []
    for key, value in items:
        if value is not None:
            flat.extend(flat_outputs(value, key) if isinstance(value, (Mapping, tuple, list)) else [(key, value)])
    return flat


def output_names_of(result) -> tuple[str, ...]:
    """Names for a model's outputs: dict keys (in order), ``output_0, output_1, ...`` for a tuple, or
    ``output`` for one tensor.

    Example:
        >>> import torch
        >>> output_names_of({"logits": torch.zeros(1), "embedding": torch.zeros(1)})
        ('logits', 'embedding')
        >>> output_names_of((torch.zeros(1), torch.zeros(1)))
        ('output_0', 'output_1')
    """
    return tuple(name for name, _ in flat_outputs(result))


def run_example(model, names: Sequence[str], example_inputs: tuple):
    """Run ``model`` on its example inputs (no grad); ExportError names the shapes when they do not fit.

    Example:
        >>> import torch
        >>> run_example(torch.nn.Linear(4, 2), ["x"], (torch.zeros(1, 4),)).shape
        torch.Size([1, 2])
    """
    torch = require("torch", "export")
    try:
        with torch.no_grad():
            return model(*example_inputs)
    except Exception as exc:
        shapes = ", ".join(f"{n}={tuple(t.shape)}" for n, t in zip(names, example_inputs))
        message = one_line(exc)
        raise ExportError(f"input shape {shapes} does not fit the model: {message}") from exc


def _other_size(size: int, k: int) -> int:
    """The k-th dynamic axis at another size that keeps its power-of-two divisibility (up to 32), so
    that models which downsample and concatenate skips still run, and two axes never move together."""
    step = min(size & -size, 32)
    return size + (k + 1) * step


def trial_sizes(inputs: Sequence[TensorSpec], example_inputs: Sequence[Any]) -> tuple[dict[str, int], ...]:
    """Named-axis sizes to try a model at: the example's with batch 1, batch 2, and (when other axes such
    as height/width are dynamic) every other axis at another size; the example's twice (two random
    draws) when nothing is dynamic.

    Example:
        >>> import torch
        >>> spec = TensorSpec("x", ("batch", 3, "height", "width"))
        >>> trial_sizes([spec], [torch.zeros(1, 3, 32, 24)])
        ({'batch': 1, 'height': 32, 'width': 24}, {'batch': 2, 'height': 32, 'width': 24}, {'batch': 1, 'height': 64, 'width': 40})
    """
    base: dict[str, int] = {}
    for spec, example in zip(inputs, example_inputs):
        for axis, name in spec.dynamic_axes.items():
            base.setdefault(name, int(example.shape[axis]))
    trials = []
    if "batch" in base:
        base["batch"] = 1
        trials.append({**base, "batch": 2})
    others = {name: _other_size(base[name], k) for k, name in enumerate(n for n in base if n != "batch")}
    if others:
        trials.append({**base, **others})
    return (base, *(trials or [base]))


def check_parity(
    session: Session,
    model,
    inputs: Sequence[TensorSpec],
    *,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    trials: Sequence[Mapping[str, int]] = ({}, {"batch": 2}),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    where: str = "the exported file",
) -> ValidationReport:
    """Compare ``session`` (the exported file in its runtime) with ``model`` (torch); raise
    ValidationError above tolerance, naming ``where``.

    An element fails when ``|file - torch| > atol + rtol * |torch|``. Trials feed random inputs at each
    mapping of dynamic-axis sizes in ``trials`` (unnamed axes are 1), or the explicit ``feeds``.
    """
    torch = require("torch", "export")
    rng = np.random.default_rng(seed)
    runs = list(feeds) if feeds is not None else [random_inputs(inputs, s, rng=rng, int_high=100) for s in trials]
    max_abs: dict[str, float] = {}
    max_rel: dict[str, float] = {}
    passed = True
    model.eval()
    for run in runs:
        got = session.run(dict(run))
        with torch.no_grad():
            expected = [v for _, v in flat_outputs(model(*[torch.from_numpy(np.asarray(run[s.name])) for s in inputs]))]
        assert len(expected) == len(got), f"torch gave {len(expected)} outputs, the file {len(got)}"
        for (name, value), ref in zip(got.items(), expected):
            ref = ref.detach().float().numpy() if hasattr(ref, "detach") else np.asarray(ref, np.float32)
            value = np.asarray(value, np.float32)
            if value.shape != ref.shape:
                raise ValidationError(f"{where}: output {name!r} has shape {value.shape} in the file but {ref.shape} in torch")
            diff = np.abs(value - ref)
            max_abs[name] = max(max_abs.get(name, 0.0), float(diff.max(initial=0.0)))
            rel = diff / np.maximum(np.abs(ref), 1e-12)
            max_rel[name] = max(max_rel.get(name, 0.0), float(rel.max(initial=0.0)))
            passed &= bool(np.all(diff <= atol + rtol * np.abs(ref)))
    report = ValidationReport(atol, rtol, len(runs), max_abs, max_rel, passed)
    if not passed:
        worst = max(max_abs, key=max_abs.get)
        raise ValidationError(
            f"{where}: output {worst!r} differs from torch by up to {max_abs[worst]:.3g} "
            f"(tolerance atol {atol:g} + rtol {rtol:g}); the export is wrong and was not saved",
            report,
        )
    return report
