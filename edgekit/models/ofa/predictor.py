"""Accuracy predictor for a supernet: subnet config -> held-out accuracy, learned from measurements.

As in once-for-all, a config is one-hot encoded (kernel and expand ratio per block, zeros for blocks
that do not run, and the resolution) and a small MLP regresses the (logit of the) accuracy measured
with the shipped supernet (BatchNorm recalibrated). ``precision_drop`` holds the measured accuracy change of fp16 and
int8 variants, so the search objective is honest about quantization.

Prediction is numpy only: the weights load from ``STEM.npz``, the torch-free copy of ``STEM.pt``
(:mod:`edgekit.models.ofa.predictor_weights`), so ``edgekit select`` never imports torch. Fitting and
saving need torch.

Example:
    >>> import random
    >>> from edgekit.models.ofa import get_space, sample
    >>> space = get_space("ofa-mbv3-tiny")
    >>> rng = random.Random(0)
    >>> configs = [sample(space, rng) for _ in range(64)]
    >>> accs = [0.5 + 0.01 * sum(c.d) for c in configs]
    >>> predictor, report = AccuracyPredictor.fit(space, configs, accs, epochs=200, seed=0)
    >>> report.rmse < 0.03
    True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import UsageError

from .predictor_weights import npz_path, pt_to_npz, read_weights

from .skeleton import OFASkeleton

__all__ = ["AccuracyPredictor", "FitReport", "check_user_out", "encode", "kendall_tau", "load_predictor", "user_predictor_path"]

# How to rebuild a predictor (named in errors and in the README).
BUILD_COMMAND = "python -m edgekit.tools.accuracy_data"
DATA_ENV = "EDGEKIT_DATA_DIR"  # where user-built predictors go (default: the platformdirs user data directory)


def encode(configs: Sequence, space: OFASkeleton) -> np.ndarray:
    """One-hot features: per block ks and e (zeros when inactive), then the resolution."""
    nk, ne, nr = len(space.ks_choices), len(space.e_choices), len(space.resolutions)
    k_index = {k: i for i, k in enumerate(space.ks_choices)}
    e_index = {e: i for i, e in enumerate(space.e_choices)}
    r_index = {r: i for i, r in enumerate(space.resolutions)}
    width = space.num_blocks * (nk + ne) + nr
    out = np.zeros((len(configs), width), np.float32)
    depth = space.max_depth
    for row, config in enumerate(configs):
        for s, d in enumerate(config.d):
            for b in range(s * depth, s * depth + d):
                out[row, b * (nk + ne) + k_index[config.ks[b]]] = 1.0
                out[row, b * (nk + ne) + nk + e_index[config.e[b]]] = 1.0
        out[row, space.num_blocks * (nk + ne) + r_index[config.r]] = 1.0
    return out


def _layer_names(count: int = 3) -> list[str]:
    """State-dict names of the MLP's Linear layers (torch.nn.Sequential indices: ReLU between them)."""
    return [str(2 * i) for i in range(count)]


def _mlp(inputs: int, hidden: int):
    from torch import nn

    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors (ties count as neither concordant nor discordant).

    Example:
        >>> kendall_tau(np.array([1, 2, 3]), np.array([10, 30, 20]))
        0.3333333333333333
    """
    a, b = np.asarray(a), np.asarray(b)
    da, db = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    ta, tb = (da[upper] != 0).sum(), (db[upper] != 0).sum()
    return float((da * db)[upper].sum() / np.sqrt(ta * tb)) if ta and tb else float("nan")


@dataclass(frozen=True)
class FitReport:
    """Held-out quality of a fitted predictor (accuracies as fractions)."""

    train: int
    held_out: int
    rmse: float
    kendall_tau: float

    def to_json(self) -> dict:
        return {"train": self.train, "held_out": self.held_out, "rmse": self.rmse, "kendall_tau": self.kendall_tau}


def relu_mlp(features: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``features`` through Linear layers given as (weight [in, out], bias), with ReLU between them.

    Example:
        >>> relu_mlp(np.ones((1, 2)), [(np.eye(2), np.array([-2.0, 0.0])), (np.ones((2, 1)), np.zeros(1))]).tolist()
        [[1.0]]
    """
    h = features
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight + bias
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


class PrecisionDrops:
    """What the search's accuracy model shares: the space's name and the precisions with a measured drop."""

    space: OFASkeleton
    precision_drop: Mapping[str, float]

    @property
    def space_name(self) -> str:
        return self.space.name

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions whose accuracy effect was measured (the search skips the others)."""
        return tuple(self.precision_drop)

    def drop(self, precision: str) -> float:
        """The measured accuracy drop at ``precision``; a UsageError for a precision never measured."""
        if precision not in self.precision_drop:
            raise UsageError(f"accuracy predictor has no measured effect for precision {precision!r}; "
                             f"it knows {sorted(self.precision_drop)}")
        return self.precision_drop[precision]


@dataclass(eq=False)  # arrays do not compare to one bool
class AccuracyPredictor(PrecisionDrops):
    """The MLP's weights as numpy arrays, its output scaling, and the measured effect of each precision.

    ``state`` is the MLP's state dict (``"0.weight"`` of shape [out, in], ``"0.bias"``, ``"2.weight"``, ...).
    Implements the search's accuracy model: :attr:`precisions` and :meth:`predict`.
    """

    space: OFASkeleton
    state: Mapping[str, np.ndarray]
    mean: float
    std: float
    hidden: int = 128
    precision_drop: Mapping[str, float] = field(default_factory=lambda: {"fp32": 0.0})
    report: FitReport | None = None

    def __post_init__(self) -> None:
        # numpy inference: a search calls predict ~100 times with ~100 rows, where torch's per-call
        # overhead (and thread start-up on a busy 2-core machine) cost ~9 ms a call against ~0.1 ms.
        self._layers = [(np.asarray(self.state[f"{n}.weight"]).T.copy(), np.asarray(self.state[f"{n}.bias"]).copy())
                        for n in _layer_names()]

    def predict(self, configs: Sequence, precision: str = "fp32") -> np.ndarray:
        """Predicted accuracy (fraction, clipped to [0, 1]) of each config at ``precision``."""
        drop = self.drop(precision)
        h = relu_mlp(encode(configs, self.space), self._layers)
        accuracy = 1.0 / (1.0 + np.exp(-(h[:, 0] * self.std + self.mean)))  # the MLP regresses logit(accuracy)
        return np.clip(accuracy - drop, 0.0, 1.0)

    @classmethod
    def fit(cls, space: OFASkeleton, configs: Sequence, accuracies: Sequence[float], *, held_out: float = 0.2,
            epochs: int = 400, hidden: int = 128, seed: int = 0) -> tuple["AccuracyPredictor", FitReport]:
        """Train on (config, accuracy) pairs (needs torch); the report scores a held-out split never trained on."""
        import torch
        from torch import nn

        if len(configs) != len(accuracies) or len(configs) < 10:
            raise UsageError(f"need at least 10 (config, accuracy) pairs of equal count, got {len(configs)}")
        order = list(range(len(configs)))
        random.Random(seed).shuffle(order)
        n_test = max(2, int(len(order) * held_out))
        test, train = order[:n_test], order[n_test:]
        # Regress logit(accuracy): predictions stay inside (0, 1) and keep resolution near 100%.
        p = np.clip(np.asarray(accuracies, np.float64), 1e-4, 1 - 1e-4)
        y = np.log(p / (1 - p)).astype(np.float32)
        mean, std = float(y[train].mean()), float(y[train].std() or 1.0)
        x_all = torch.from_numpy(encode(configs, space))
        y_all = torch.from_numpy((y - mean) / std)
        torch.manual_seed(seed)
        network = _mlp(x_all.shape[1], hidden)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-4)
        train_index = torch.tensor(train)
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(network(x_all[train_index]).squeeze(1), y_all[train_index])
            loss.backward()
            optimizer.step()
        state = {name: tensor.detach().numpy().copy() for name, tensor in network.state_dict().items()}
        predictor = cls(space, state, mean, std, hidden)
        predicted = predictor.predict([configs[i] for i in test])
        truth = np.asarray(accuracies, np.float64)[test]
        report = FitReport(len(train), len(test), float(np.sqrt(np.mean((predicted - truth) ** 2))), kendall_tau(predicted, truth))
        predictor.report = report
        return predictor, report

    def save(self, path: str | Path) -> None:
        """Weights as a tensor-only .pt (loads with weights_only=True), its numpy copy (.npz, derived from
        the .pt) and a JSON of the rest. Needs torch."""
        import torch

        path = Path(path)
        tmp = path.with_suffix(".pt.tmp")
        torch.save({name: torch.from_numpy(np.asarray(array)) for name, array in self.state.items()}, tmp)
        tmp.replace(path.with_suffix(".pt"))
        pt_to_npz(path)
        meta = {"space": self.space.name, "mean": self.mean, "std": self.std, "hidden": self.hidden,
                "precision_drop": dict(self.precision_drop), "report": self.report.to_json() if self.report else None}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, space: OFASkeleton) -> "AccuracyPredictor":
        """Read ``STEM.json`` and the weights (``STEM.npz``, torch-free; else ``STEM.pt`` with torch)."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot load the accuracy predictor ({exc})") from exc
        if meta.get("space") != space.name:
            raise UsageError(f"{path}: accuracy predictor is for space {meta.get('space')!r}, not {space.name!r}")
        hidden = int(meta["hidden"])
        state = read_weights(path)
        inputs = encode([], space).shape[1]
        expected = {"0.weight": (hidden, inputs), "0.bias": (hidden,), "2.weight": (hidden, hidden), "2.bias": (hidden,),
                    "4.weight": (1, hidden), "4.bias": (1,)}
        found = {name: tuple(array.shape) for name, array in state.items()}
        if found != expected:
            raise UsageError(f"{npz_path(path) if npz_path(path).is_file() else path.with_suffix('.pt')}: weights have "
                             f"shapes {found}, the predictor of space {space.name!r} needs {expected}")
        report = FitReport(**meta["report"]) if meta.get("report") else None
        return cls(space, state, float(meta["mean"]), float(meta["std"]), hidden, dict(meta["precision_drop"]), report)


def default_predictor_path(space_name: str) -> Path:
    """The path stem of the predictor shipped for ``space_name`` (its files may not exist).

    Example:
        >>> default_predictor_path("ofa-mbv3-shapes").name
        'ofa_mbv3_shapes_accuracy'
    """
    return Path(__file__).resolve().parent.parent / "weights" / f"{space_name.replace('-', '_').replace('.', '_')}_accuracy"


def user_predictors_dir() -> Path:
    """Where user-built predictors go by default: ``$EDGEKIT_DATA_DIR/predictors``, else ``predictors`` in
    the platformdirs user data directory (never the installed package).

    Example:
        >>> user_predictors_dir().name
        'predictors'
    """
    import os

    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser() / "predictors"
    import platformdirs

    return Path(platformdirs.user_data_dir("edgekit")) / "predictors"


def user_predictor_path(space_name: str) -> Path:
    """The default path stem of a user-built predictor for ``space_name``.

    Example:
        >>> user_predictor_path("ofa-mbv3-w1.0").relative_to(user_predictors_dir()).as_posix()
        'ofa_mbv3_w1_0_accuracy'
    """
    return user_predictors_dir() / default_predictor_path(space_name).name


def package_dir() -> Path:
    """The installed ``edgekit`` package directory (user builds never write inside it)."""
    return Path(__file__).resolve().parents[2]


def check_user_out(path: str | Path) -> Path:
    """``path`` resolved, or a UsageError when it lies inside the installed package (user builds go elsewhere).

    Example:
        >>> check_user_out(default_predictor_path("ofa-mbv3-w1.0"))
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --out ...: inside the installed edgekit package; write user-built predictors elsewhere (default ...)
    """
    resolved = Path(path).expanduser().resolve()
    if resolved.is_relative_to(package_dir()):
        raise UsageError(f"--out {path}: inside the installed edgekit package; write user-built predictors elsewhere "
                         f"(default {user_predictors_dir()})")
    return resolved


def load_predictor(space: OFASkeleton, path: str | Path | None = None) -> AccuracyPredictor:
    """The predictor at the path stem ``path``, else the one shipped for ``space``, else a user-built one
    (:func:`user_predictor_path`), or an error saying how to get one.

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> load_predictor(get_space("ofa-mbv3-shapes")).precisions
        ('fp32', 'fp16', 'int8')
    """
    if path is None:
        path = default_predictor_path(space.name)
        if not path.with_suffix(".json").is_file() and user_predictor_path(space.name).with_suffix(".json").is_file():
            path = user_predictor_path(space.name)
    path = Path(path)
    if not path.with_suffix(".json").is_file():
        released = " or pass once-for-all's released predictor with --accuracy ofa_acc_predictor.pth" \
            if space.name == "ofa-mbv3-w1.0" else ""
        raise UsageError(f"no accuracy predictor at {path.with_suffix('.json')}: build one with "
                         f"{BUILD_COMMAND} --space {space.name} (writes {user_predictor_path(space.name)}){released}")
    return AccuracyPredictor.load(path, space)
