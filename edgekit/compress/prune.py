"""Structured channel pruning to a MACs target through torch-pruning (DependencyGraph + MetaPruner).

torch-pruning traces the model once, groups every layer whose channels are coupled (a conv, its
BatchNorm, the convs that read it, residual additions), ranks each group's channels by L2 magnitude
(``MagnitudeImportance``) and removes the weakest, so the pruned model is a smaller dense model that
any runtime runs faster. The output layer (the last convolution / linear to run: the classifier or the
segmentation logits conv) is never pruned, so the outputs keep their class count.

``prune_to_macs`` finds, by bisection, the scale of the per-group rates (uniform: every group the same;
see :mod:`edgekit.compress.allocation` for sensitivity-based rates) at which the pruned copy's MACs
(``tp.utils.count_ops_and_params``) remove the asked fraction within ``tolerance`` (default 2 points).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
    ...                           torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1))
    >>> result = prune_to_macs(net, torch.zeros(1, 3, 16, 16), 0.5)
    >>> abs(result.removed - 0.5) <= 0.02, tuple(result.model(torch.zeros(1, 3, 16, 16)).shape)
    (True, (1, 4, 16, 16))
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from edgekit.runtimes.errors import UsageError, one_line

__all__ = ["PruneResult", "count_macs", "output_layers", "group_roots", "prune_with_rates", "prune_to_macs",
           "MAX_GROUP_RATE"]

MAX_GROUP_RATE = 0.9  # never remove more than 90% of one group's channels
_ROOTS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class PruneResult:
    """The pruned model (a new module; the input is left as it was) and what it cost."""

    model: nn.Module
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    rates: Mapping[str, float] = field(default_factory=dict)  # group root layer -> channel rate asked
    trials: int = 0  # pruned copies measured by the bisection
    round_to: int | None = None  # kept channel counts are multiples of this (None: any count)

    @property
    def removed(self) -> float:
        """The fraction of MACs removed."""
        return 1.0 - self.macs_after / self.macs_before


def _tp():
    try:
        import torch_pruning
    except ImportError:
        raise UsageError("--prune needs torch-pruning: pip install 'edgekit[compress]'") from None
    return torch_pruning


def count_macs(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on ``example``, as torch-pruning counts them."""
    with torch.no_grad():
        macs, params = _tp().utils.count_ops_and_params(model, example)
    return int(macs), int(params)


class _Tracker:
    """Forward hooks that remember which layers ran, in order, and the layer running when a forward failed."""

    def __init__(self, model: nn.Module):
        self.order: list[str] = []
        self.stack: list[str] = []
        self.handles = []
        for name, module in model.named_modules():
            if name:
                self.handles.append(module.register_forward_pre_hook(self._enter(name)))
                self.handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name: str):
        def hook(module, args):
            self.stack.append(name)
            self.order.append(name)
        return hook

    def _leave(self, name: str):
        def hook(module, args, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@contextlib.contextmanager
def _naming_layer(model: nn.Module, what: str) -> Iterator[_Tracker]:
    """Turn an exception raised while ``model`` runs (or is traced) into one UsageError line naming the
    innermost layer that was running."""
    tracker = _Tracker(model)
    try:
        yield tracker
    except UsageError:
        raise
    except Exception as exc:
        name = tracker.stack[-1] if tracker.stack else ""
        layer = dict(model.named_modules()).get(name, model)
        message = one_line(exc)
        raise UsageError(f"{what}: layer {name or 'the top-level forward'!r} ({type(layer).__name__}) failed: "
                         f"{message}") from None
    finally:
        tracker.close()


def _run_named(model: nn.Module, example: torch.Tensor, what: str):
    """Run ``model``; an exception names the innermost layer that was running."""
    with _naming_layer(model, what), torch.no_grad():
        return model(example)


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The last convolution / linear layer to run: it makes the outputs, so pruning ignores it."""
    tracker = _Tracker(model)
    try:
        with torch.no_grad():
            model(example)
    finally:
        tracker.close()
    modules = dict(model.named_modules())
    roots = [name for name in tracker.order if isinstance(modules[name], _ROOTS)]
    if not roots:
        raise UsageError(f"{type(model).__name__}: no convolution or linear layer ran: nothing to prune")
    return [modules[roots[-1]]]


def _graph(model: nn.Module, example: torch.Tensor):
    with _naming_layer(model, "torch-pruning cannot trace the model"):
        return _tp().DependencyGraph().build_dependency(model, example_inputs=example)


def group_roots(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module] | None = None) -> list[str]:
    """The name of each prunable group's root layer (one per set of coupled channels); UsageError when
    there is none, e.g. when every layer is ignored (torch-pruning would then silently prune nothing)."""
    ignored = output_layers(model, example) if ignored is None else ignored
    graph = _graph(model, example)
    names = {module: name for name, module in model.named_modules()}
    roots = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=_ROOTS):
        module = group[0].dep.target.module
        if module in names:
            roots.append(names[module])
    if not roots:
        raise UsageError(f"{type(model).__name__}: no prunable channel group outside the output layer "
                         "(torch-pruning would prune nothing)")
    return roots


def prune_with_rates(model: nn.Module, example: torch.Tensor, rates: Mapping[str, float], *,
                     ignored: list[nn.Module] | None = None, extra: Mapping[str, object] | None = None,
                     round_to: int | None = None) -> nn.Module:
    """A pruned copy of ``model``: each group rooted at a named layer loses that fraction of its channels
    (lowest L2 magnitude first), kept channel counts rounded to multiples of ``round_to`` (N:M sparsity needs
    multiples of M); ``extra`` goes to MetaPruner (attention heads). The copy must still run and
    give outputs of the same shape, else a UsageError names the failing layer."""
    tp = _tp()
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    ignored_copy = output_layers(pruned, example) if ignored is None else [
        modules[name] for name, m in model.named_modules() if any(m is i for i in ignored)]
    before = _run_named(pruned, example, "before pruning")
    with _naming_layer(pruned, "torch-pruning cannot trace the model"):
        pruner = tp.pruner.MetaPruner(
            pruned, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.0,
            pruning_ratio_dict={modules[name]: min(MAX_GROUP_RATE, rate) for name, rate in rates.items() if rate > 0},
            ignored_layers=ignored_copy, round_to=round_to, **dict(extra or {}))
    with torch.no_grad():
        pruner.step()
    after = _run_named(pruned, example, "after pruning")
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor) and before.shape != after.shape:
        raise UsageError(f"pruning changed the output shape {tuple(before.shape)} -> {tuple(after.shape)}: "
                         "a layer reshapes to a fixed channel count torch-pruning cannot follow")
    return pruned


def _width(module: nn.Module | None) -> int:
    """Output channels (or features) of a group's root layer; a large number when it has none."""
    return int(getattr(module, "out_channels", getattr(module, "out_features", 1 << 30)))


def _rounded_rate(channels: int, rate: float, multiple: int) -> float:
    """The rate that keeps the multiple of ``multiple`` nearest to ``channels * (1 - rate)`` (at least one
    multiple; a group that is no multiple keeps its rate). Rounded here rather than by torch-pruning's
    ``round_to``, which leaves a group whole when its rounded count would be 0, so that more pruning could
    remove fewer MACs and the bisection failed."""
    if rate <= 0 or channels % multiple:
        return rate
    least = multiple * max(1, math.ceil(channels * (1 - MAX_GROUP_RATE) / multiple))
    kept = max(least, multiple * round(channels * (1 - rate) / multiple))
    return (channels - kept - 0.5) / channels  # torch-pruning keeps int(channels * (1 - rate)) channels


def prune_to_macs(model: nn.Module, example: torch.Tensor, ratio: float, *, weights: Mapping[str, float] | None = None,
                  tolerance: float = 0.02, ignored: list[nn.Module] | None = None, max_trials: int = 24,
                  prune: Callable[..., nn.Module] | None = None, round_to: int | None = None) -> PruneResult:
    """Prune a copy of ``model`` so that ``ratio`` of its MACs go, within ``tolerance``: group ``g`` loses
    ``min(0.9, scale * weights[g])`` of its channels (``weights`` None: 1 for every group: uniform), the
    scale found by bisection. With ``round_to`` (channel counts kept at multiples of it), groups of at most
    ``2 * round_to`` channels are left whole (rounding could only halve them: seg-simple's 16-channel stage
    lost 7 mIoU points that way), and a target that the rounding makes unreachable within ``tolerance`` is
    pruned again without rounding. UsageError when the target cannot be reached."""
    prune = prune or prune_with_rates
    weights_in = weights
    macs0, params0 = count_macs(model, example)
    roots = group_roots(model, example, ignored)
    weights = {name: 1.0 for name in roots} if weights is None else dict(weights)
    if round_to is not None:  # a group of <= 2 multiples could only be halved or worse: left whole
        modules = dict(model.named_modules())
        weights = {name: 0.0 if _width(modules.get(name)) <= 2 * round_to else w for name, w in weights.items()}
        if not any(weights.values()):
            return prune_to_macs(model, example, ratio, weights=weights_in, tolerance=tolerance, ignored=ignored,
                                 max_trials=max_trials, prune=prune)
    low, high = 0.0, 1.0 / max(min(w for w in weights.values() if w > 0), 1e-6)
    best: tuple[float, nn.Module, int, int, dict[str, float]] | None = None
    for trial in range(1, max_trials + 1):
        scale = (low + high) / 2
        rates = {name: min(MAX_GROUP_RATE, scale * w) for name, w in weights.items()}
        if round_to is not None:
            rates = {name: _rounded_rate(_width(modules.get(name)), rate, round_to) for name, rate in rates.items()}
        pruned = prune(model, example, rates, ignored=ignored)
        macs, params = count_macs(pruned, example)
        removed = 1.0 - macs / macs0
        if best is None or abs(removed - ratio) < abs(best[0] - ratio):
            best = (removed, pruned, macs, params, rates)
        if abs(removed - ratio) <= tolerance / 4:
            break
        low, high = (scale, high) if removed < ratio else (low, scale)
        if high - low < 1e-3:  # the rates no longer change the channel counts
            break
    assert best is not None
    removed, pruned, macs, params, rates = best
    if abs(removed - ratio) > tolerance and round_to is not None:  # too coarse: channels need not be multiples
        return prune_to_macs(model, example, ratio, weights=weights_in, tolerance=tolerance, ignored=ignored,
                             max_trials=max_trials, prune=prune)
    if abs(removed - ratio) > tolerance:
        raise UsageError(f"--prune {ratio:g}: reached {removed:.3f} of the MACs removed, not {ratio:g} within "
                         f"{tolerance:g} (at most {MAX_GROUP_RATE:.0%} of each group's channels can go)")
    return PruneResult(pruned, macs0, macs, params0, params, rates, trial, round_to)
