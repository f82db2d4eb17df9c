"""Save and reload a pruned model through torch-pruning's state-dict helpers.

A pruned model's ``state_dict()`` does not load into a fresh instance of its class (the layer shapes
changed); ``tp.state_dict`` also records each layer's attributes (channel counts), and
``tp.load_state_dict`` puts them back into a freshly built dense model. The file loads with
``torch.load(weights_only=True)``: no pickled code runs (only parameters, buffers and plain attributes
of torch-pruning's record are saved).

Example:
    >>> import tempfile, pathlib, torch
    >>> from edgekit.compress.prune import prune_with_rates
    >>> build = lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    >>> pruned = prune_with_rates(build(), torch.zeros(1, 3, 8, 8), {"0": 0.5})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pruned.pt"
    >>> save_pruned(pruned, path)
    >>> again = load_pruned(build(), path)
    >>> again[0].out_channels, bool(torch.equal(again(torch.ones(1, 3, 8, 8)), pruned(torch.ones(1, 3, 8, 8))))
    (4, True)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgekit.runtimes.errors import UsageError, one_line

from .prune import _tp

__all__ = ["save_pruned", "load_pruned"]


def save_pruned(model: nn.Module, path: Path) -> None:
    """Write ``model``'s torch-pruning state (weights and layer attributes) to ``path`` atomically."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(_loadable(_tp().state_dict(model)), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(value: object) -> bool:
    """Values ``torch.load(weights_only=True)`` reads back: numbers, strings, None, tuples / lists of them."""
    if isinstance(value, (tuple, list)):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _loadable(state: dict) -> dict:
    """torch-pruning's state keeps each module's whole ``__dict__`` (hooks, dtypes, ...); keep its parameters,
    buffers and plain attributes (channel counts, kernel sizes), which is what the pruned shapes need."""
    full = {name: {key: value for key, value in entries.items() if key in ("_parameters", "_buffers") or _plain(value)}
            for name, entries in state["full_state_dict"].items()}
    attributes = {name: {key: value for key, value in entries.items() if _plain(value)}
                  for name, entries in state["attributions"].items()}
    return {"full_state_dict": full, "attributions": attributes}


def load_pruned(model: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` (from :func:`save_pruned`) into ``model``, a freshly built dense instance of the same class;
    returns it in eval mode."""
    try:
        state = torch.load(Path(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        message = one_line(exc)
        raise UsageError(f"{path}: not a pruned checkpoint that loads without pickled code ({message})") from None
    if not isinstance(state, dict) or {"full_state_dict", "attributions"} - set(state):
        raise UsageError(f"{path}: not a torch-pruning state dict (expected full_state_dict and attributions)")
    return _tp().load_state_dict(model, state).eval()
