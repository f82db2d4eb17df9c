"""once-for-all's released accuracy predictor (``ofa_acc_predictor.pth``), run with numpy.

once-for-all ships an MLP for its w1.0 MobileNetV3 space: the state dict of
``ofa.nas.accuracy_predictor.AccuracyPredictor`` (``layers.{i}.0.weight/bias`` for the hidden Linear+ReLU
layers, ``layers.{n}.weight`` for the last Linear, which has no bias, and a ``base_acc`` buffer). Its input
is ``MobileNetArchEncoder.arch2feature``: the one-hot resolution, then one-hot kernel sizes of all 20
blocks, then one-hot expand ratios of all 20 blocks (zeros for blocks a stage's depth drops). That is
a column permutation of edgekit's own encoding (:func:`edgekit.models.ofa.predictor.encode`), so it is
built from it. The output is ``MLP(features) + base_acc``, top-1 as a fraction, exactly as
``predict_acc`` computes it (not clipped).

The .pth is read once with ``torch.load(weights_only=True)`` (after a size check), checked against the
space, and its arrays cached as ``predictors/released-SHA256.npz`` under edgekit's user cache directory
(beside the latency store, ``$EDGEKIT_CACHE_DIR`` when set); later loads read the .npz with numpy only.
The released predictor knows fp32; fp16/int8 use the precision drop edgekit measured for the space
where its shipped predictor has one, else the search skips them.

Example:
    >>> import numpy as np
    >>> from edgekit.models.ofa import get_space
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> state = {"layers.0.0.weight": np.zeros((4, 145), np.float32), "layers.0.0.bias": np.zeros(4, np.float32),
    ...          "layers.1.weight": np.zeros((1, 4), np.float32), "base_acc": np.full(1, 0.75, np.float32)}
    >>> predictor = ReleasedPredictor.from_state(space, state, "demo.pth")
    >>> predictor.precisions, predictor.predict([space.smallest()]).round(2).tolist()
    (('fp32',), [0.75])
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgekit.runtimes.bundle import sha256_file
from edgekit.runtimes.errors import ModelLoadError, UsageError

from .predictor import PrecisionDrops, default_predictor_path, encode, relu_mlp
from .predictor_weights import write_npz
from .skeleton import OFASkeleton

__all__ = ["ReleasedPredictor", "SOURCE", "MAX_BYTES", "cache_path", "check_state", "is_released", "load_released",
           "ofa_features"]

SOURCE = "released once-for-all predictor (fp32)"  # the accuracy source select reports
MAX_BYTES = 64 << 20  # the released file is ~1 MB; anything far bigger is not this predictor
_HIDDEN = re.compile(r"layers\.(\d+)\.0\.(weight|bias)")


def ofa_features(configs: Sequence, space: OFASkeleton) -> np.ndarray:
    """``MobileNetArchEncoder.arch2feature`` of each config: resolution, then all kernels, then all expands.

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> space = get_space("ofa-mbv3-w1.0")
        >>> features = ofa_features([space.smallest()], space)
        >>> features.shape, int(features[0, :25].argmax()), int(features.sum())   # 128 px; 10 active blocks x 2 + r
        ((1, 145), 0, 21)
    """
    nk, ne = len(space.ks_choices), len(space.e_choices)
    per_block = nk + ne
    blocks = range(space.num_blocks)
    order = [space.num_blocks * per_block + i for i in range(len(space.resolutions))]
    order += [b * per_block + i for b in blocks for i in range(nk)]
    order += [b * per_block + nk + i for b in blocks for i in range(ne)]
    return encode(configs, space)[:, order]


def _measured_drops(space: OFASkeleton) -> dict[str, float]:
    """fp32 plus the precision drops edgekit measured for ``space`` (from its shipped predictor), if any."""
    meta = default_predictor_path(space.name).with_suffix(".json")
    drops = json.loads(meta.read_text()).get("precision_drop", {}) if meta.is_file() else {}
    return {"fp32": 0.0, **{p: float(v) for p, v in drops.items() if p != "fp32"}}


@dataclass(frozen=True, eq=False)  # arrays do not compare to one bool
class ReleasedPredictor(PrecisionDrops):
    """once-for-all's MLP as numpy arrays; implements the search's accuracy model (precisions, predict)."""

    space: OFASkeleton
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight [in, out], bias) per Linear; the last one's bias is 0
    base_acc: float
    file: str
    precision_drop: Mapping[str, float] = field(default_factory=lambda: {"fp32": 0.0})
    source: str = SOURCE

    def predict(self, configs: Sequence, precision: str = "fp32") -> np.ndarray:
        """``predict_acc`` of each config (fraction, unclipped) minus edgekit's measured drop at ``precision``."""
        drop = self.drop(precision)
        return relu_mlp(ofa_features(configs, self.space), self.layers)[:, 0] + self.base_acc - drop

    @classmethod
    def from_state(cls, space: OFASkeleton, state: Mapping[str, np.ndarray], file: str) -> "ReleasedPredictor":
        """Check ``state`` (once-for-all's keys, shapes that fit ``space``) and build the predictor."""
        check_state(state, space, file)
        n = len([k for k in state if k.endswith(".0.weight")])
        layers = [(np.asarray(state[f"layers.{i}.0.weight"], np.float32).T.copy(),
                   np.asarray(state[f"layers.{i}.0.bias"], np.float32)) for i in range(n)]
        layers.append((np.asarray(state[f"layers.{n}.weight"], np.float32).T.copy(), np.zeros(1, np.float32)))
        return cls(space, tuple(layers), float(np.asarray(state["base_acc"]).reshape(-1)[0]), file, _measured_drops(space))


def check_state(state: Mapping[str, np.ndarray], space: OFASkeleton, file: str) -> None:
    """Raise ModelLoadError naming the key and the expected vs found shape where ``state`` is not the predictor."""
    indices = sorted({int(m.group(1)) for k in state if (m := _HIDDEN.fullmatch(k))})
    n = len(indices)
    if n == 0 or indices != list(range(n)):
        raise ModelLoadError(f"{file}: not a once-for-all AccuracyPredictor state dict: no layers.0.0.weight "
                             f"(keys: {', '.join(sorted(state)[:5]) or 'none'})")
    expected: dict[str, tuple[int, ...]] = {}
    width = int(np.shape(state["layers.0.0.weight"])[0]) if np.ndim(state["layers.0.0.weight"]) == 2 else -1
    for i in range(n):
        expected[f"layers.{i}.0.weight"] = (width, encode([], space).shape[1] if i == 0 else width)
        expected[f"layers.{i}.0.bias"] = (width,)
    expected[f"layers.{n}.weight"] = (1, width)
    expected["base_acc"] = (1,)
    for key, shape in expected.items():
        if key not in state:
            raise ModelLoadError(f"{file}: not a once-for-all AccuracyPredictor state dict: key {key} missing")
        found = tuple(np.shape(state[key]))
        if found != shape:
            what = ("an accuracy predictor of another space" if key == "layers.0.0.weight" and found[1:] != shape[1:]
                    else "not a once-for-all AccuracyPredictor")
            raise ModelLoadError(f"{file}: {key} has shape {found}, {space.name} needs {shape}: {what}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelLoadError(f"{file}: not a once-for-all AccuracyPredictor state dict: unexpected key {extra[0]}")


def cache_path(digest: str) -> Path:
    """Where the numpy copy of a released predictor with sha256 ``digest`` is cached.

    Example:
        >>> cache_path("ab" * 32).name
        'released-abababababababababababababababababababababababababababababababab.npz'
    """
    from edgekit.targets.store import default_store_path

    return default_store_path().parent / "predictors" / f"released-{digest}.npz"


def is_released(path: str | Path) -> bool:
    """True for once-for-all's ``.pth`` (edgekit's own predictors are a path stem with .json/.npz/.pt beside it).

    Example:
        >>> is_released("ofa_acc_predictor.pth"), is_released(default_predictor_path("ofa-mbv3-shapes"))
        (True, False)
    """
    return Path(path).suffix == ".pth"


def _read_pth(path: Path) -> dict[str, np.ndarray]:
    """The state dict in ``path`` as float32 arrays (torch, weights_only); unwraps ``{"state_dict": ...}``."""
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot be read by torch.load(weights_only=True): "
                             f"{str(exc).splitlines()[0][:160]}") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not a state dict of tensors")
    return {str(k): v.detach().to(torch.float32).numpy().copy() for k, v in data.items()}


def load_released(path: str | Path, space: OFASkeleton) -> ReleasedPredictor:
    """The released predictor in ``path`` for ``space``: converted once (torch), then read from the cache (numpy).

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> load_released("missing.pth", get_space("ofa-mbv3-w1.0"))
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --accuracy missing.pth: no such file
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--accuracy {path}: no such file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ModelLoadError(f"{path}: {size / (1 << 20):.1f} MiB is more than the {MAX_BYTES >> 20} MiB an accuracy "
                             f"predictor checkpoint may be")
    cached = cache_path(sha256_file(path))
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as archive:
                return ReleasedPredictor.from_state(space, {k: archive[k] for k in archive.files}, str(path))
        except (OSError, ValueError, zipfile.BadZipFile):  # a damaged cache entry: convert again
            cached.unlink(missing_ok=True)
    state = _read_pth(path)
    predictor = ReleasedPredictor.from_state(space, state, str(path))  # checked before anything is written
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_npz(state, cached)
    return predictor
