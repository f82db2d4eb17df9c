"""Load and save OFA supernet weights: once-for-all's released layout and edgekit's own.

Two layouts are read, always with ``torch.load(weights_only=True)``:

* once-for-all's (``ofa_mbv3_d234_e346_k357_w1.0`` / ``w1.2``): a state dict, or ``{"state_dict": ...}``,
  with keys like ``blocks.2.conv.depth_conv.conv.5to3_matrix``; renamed here key by key;
* edgekit's: ``{"format": "edgekit-ofa", "space": name, "state_dict": ...}`` (fp16 or fp32) as written by
  :func:`save_checkpoint`.

A file of another family or width is refused, naming the first mismatched keys and their count.

Example:
    >>> import tempfile, os
    >>> net = build_supernet("ofa-mbv3-shapes")
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> save_checkpoint(net, path)
    >>> build_supernet("ofa-mbv3-shapes", checkpoint=path).space.name
    'ofa-mbv3-shapes'
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from edgekit.runtimes.errors import ModelLoadError, UsageError

from .space import _DEFAULTS, OFASpace, default_checkpoint, get_space  # default_checkpoint: torch-free
from .supernet import OFASupernet

__all__ = [
    "CheckpointError",
    "build_supernet",
    "default_checkpoint",
    "load_checkpoint",
    "ofa_key_map",
    "save_checkpoint",
]

FORMAT = "edgekit-ofa"
_OPTIONAL = ("num_batches_tracked",)
_SHOW = 5


class CheckpointError(ModelLoadError):
    """A checkpoint that cannot be read, or whose keys/shapes do not fit the requested space."""


def _ofa_name(key: str) -> str:
    """once-for-all's name of an edgekit supernet key."""
    head, _, rest = key.partition(".")
    if head == "stem":
        return f"first_conv.{rest}"
    if head == "first_block":
        part, _, tail = rest.partition(".")
        return "blocks.0.conv." + {"dw": "depth_conv", "project": "point_linear"}[part] + "." + tail
    if head == "final_expand":
        return f"final_expand_layer.{rest}"
    if head == "feature_mix":
        return f"feature_mix_layer.{rest}"
    if head == "classifier":
        return f"classifier.linear.{rest}"
    assert head == "blocks", key
    index, _, rest = rest.partition(".")
    prefix = f"blocks.{int(index) + 1}.conv."
    part, _, tail = rest.partition(".")
    if part == "kernel_transforms":
        return prefix + f"depth_conv.conv.{tail}_matrix"
    if part == "se":
        return prefix + f"depth_conv.se.fc.{tail}"
    layer = {"expand": "inverted_bottleneck", "dw": "depth_conv", "project": "point_linear"}[part]
    sub, _, leaf = tail.partition(".")  # conv.weight -> conv.conv.weight, bn.x -> bn.bn.x
    return prefix + f"{layer}.{sub}.{sub}.{leaf}"


def ofa_key_map(space: OFASpace) -> dict[str, str]:
    """once-for-all key -> edgekit key for every tensor of the supernet of ``space``.

    Example:
        >>> m = ofa_key_map(get_space("ofa-mbv3-w1.0"))
        >>> len(m), m["blocks.2.conv.depth_conv.conv.5to3_matrix"]
        (475, 'blocks.1.kernel_transforms.5to3')
    """
    with torch.device("meta"):
        keys = list(OFASupernet(space).state_dict())
    return {_ofa_name(k): k for k in keys}


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(f"checkpoint {str(path)!r} cannot be read by torch.load: not a torch file") from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} needs code execution to unpickle (object {found.group(1)}), which "
            "torch.load(weights_only=True) refuses: re-save only tensors, e.g. torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read by torch.load: {str(exc).splitlines()[0][:160]}") from None


def _fit(name: str, state: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped keys (first few + counts)."""
    missing = [k for k in want if k not in state and not k.endswith(_OPTIONAL)]
    unexpected = [k for k in state if k not in want]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(want[k].shape)}"
        for k in want
        if k in state and tuple(state[k].shape) != tuple(want[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs space)", shapes)):
        if items:
            more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    if problems:
        raise CheckpointError(f"{source} does not fit space {name!r}: " + "; ".join(problems))


def load_checkpoint(supernet: OFASupernet, path: str | Path) -> OFASupernet:
    """Load weights into ``supernet`` (in place) from either layout; returns it in eval mode.

    Example:
        >>> import tempfile, os
        >>> net = build_supernet("ofa-mbv3-shapes")
        >>> p = os.path.join(tempfile.mkdtemp(), "w.pt"); save_checkpoint(net, p)
        >>> load_checkpoint(build_supernet("ofa-mbv3-shapes"), p).training
        False
    """
    space = supernet.space
    data = _read(path)
    source = f"checkpoint {str(path)!r}"
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{source} holds a {type(data).__name__}, not a state dict")
    want = supernet.state_dict()
    if data.get("format") == FORMAT:
        if data.get("space") != space.name:
            raise CheckpointError(f"{source} is for space {data.get('space')!r}, not {space.name!r}")
        state = dict(data["state_dict"])
    else:
        raw = data["state_dict"] if isinstance(data.get("state_dict"), Mapping) else data
        if not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise CheckpointError(f"{source} is not a state dict of tensors (keys: {list(raw)[:_SHOW]})")
        mapping = ofa_key_map(space)
        if any(k in want for k in raw) and not any(k in mapping for k in raw):
            state = dict(raw)  # a plain edgekit state dict without the metadata wrapper
        else:
            _fit(space.name, raw, {k: want[v] for k, v in mapping.items()}, source + " (once-for-all layout)")
            state = {mapping[k]: v for k, v in raw.items()}
    _fit(space.name, state, want, source)
    for key, ref in want.items():
        if key in state:
            state[key] = state[key].to(dtype=ref.dtype)
        else:  # an optional counter (num_batches_tracked) absent from old files
            state[key] = ref.clone()
    supernet.load_state_dict(state, strict=True)
    return supernet.eval()


def save_checkpoint(
    supernet: OFASupernet, path: str | Path, dtype: torch.dtype = torch.float16, meta: Mapping[str, Any] | None = None
) -> None:
    """Write edgekit's layout atomically (temp file + rename); floats cast to ``dtype``.

    ``meta`` (str/int/float/list/dict values only) is stored beside the weights.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> save_checkpoint(build_supernet("ofa-mbv3-shapes"), p, meta={"seed": 0})
        >>> torch.load(p, weights_only=True)["meta"]
        {'seed': 0}
    """
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in supernet.state_dict().items()
    }
    payload = {"format": FORMAT, "space": supernet.space.name, "state_dict": state, "meta": dict(meta or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_supernet(space: str | OFASpace, checkpoint: str | Path | None = None) -> OFASupernet:
    """A supernet for ``space`` (a name or an :class:`OFASpace`), optionally loaded from ``checkpoint``.

    ``checkpoint="default"`` loads the weights shipped for that space (see :func:`default_checkpoint`).

    Example:
        >>> net = build_supernet("ofa-mbv3-shapes", checkpoint="default")
        >>> net.space.num_classes, net.training
        (10, False)
    """
    space = get_space(space) if isinstance(space, str) else space
    if not isinstance(space, OFASpace):
        raise UsageError(f"space must be a space name or an OFASpace, got {type(space).__name__}")
    net = OFASupernet(space)
    if checkpoint is None:
        return net
    if str(checkpoint) == "default":
        path = default_checkpoint(space.name)
        if path is None:
            raise UsageError(
                f"no checkpoint ships for space {space.name!r}: pass a file path "
                f"(shipped: {sorted(_DEFAULTS)})"
            )
        checkpoint = path
    return load_checkpoint(net, checkpoint)
