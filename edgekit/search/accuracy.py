"""Accuracy predictor for a supernet: subnet config -> held-out accuracy, learned from measurements.

As in once-for-all, a config is one-hot encoded (kernel and expand ratio per block, zeros for blocks
that do not run, and the resolution) and a small MLP regresses the (logit of the) accuracy measured
with the shipped supernet (BatchNorm recalibrated). ``precision_drop`` holds the measured accuracy change of fp16 and
int8 variants, so the search objective is honest about quantization.

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
import torch
from torch import nn

from edgekit.runtimes.bundle import atomic_write_text
from edgekit.runtimes.errors import UsageError

__all__ = ["AccuracyPredictor", "FitReport", "encode", "kendall_tau"]


def encode(configs: Sequence, space) -> np.ndarray:
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


def _mlp(inputs: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors (ties count as neither concordant nor discordant)."""
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


@dataclass
class AccuracyPredictor:
    space_name: str
    network: nn.Module
    mean: float
    std: float
    hidden: int = 128
    precision_drop: Mapping[str, float] = field(default_factory=lambda: {"fp32": 0.0})
    report: FitReport | None = None

    def _layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        # numpy inference: a search calls this ~100 times with ~100 rows, where torch's per-call
        # overhead (and thread start-up on a busy 2-core machine) cost ~9 ms a call against ~0.1 ms.
        cached = getattr(self, "_numpy_layers", None)
        if cached is None:
            linears = [m for m in self.network if isinstance(m, nn.Linear)]
            cached = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]
            self._numpy_layers = cached
        return cached

    def predict(self, configs: Sequence, space, precision: str = "fp32") -> np.ndarray:
        """Predicted accuracy (fraction, clipped to [0, 1]) of each config at ``precision``."""
        if precision not in self.precision_drop:
            raise UsageError(f"accuracy predictor has no measured effect for precision {precision!r}; "
                             f"it knows {sorted(self.precision_drop)}")
        h = encode(configs, space)
        layers = self._layers()
        for i, (weight, bias) in enumerate(layers):
            h = h @ weight + bias
            if i < len(layers) - 1:
                h = np.maximum(h, 0.0)
        accuracy = 1.0 / (1.0 + np.exp(-(h[:, 0] * self.std + self.mean)))  # the MLP regresses logit(accuracy)
        return np.clip(accuracy - self.precision_drop[precision], 0.0, 1.0)

    @classmethod
    def fit(cls, space, configs: Sequence, accuracies: Sequence[float], *, held_out: float = 0.2, epochs: int = 400,
            hidden: int = 128, seed: int = 0) -> tuple["AccuracyPredictor", FitReport]:
        """Train on (config, accuracy) pairs; the report scores a held-out split never trained on."""
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
        network.eval()
        predictor = cls(space.name, network, mean, std, hidden)
        predicted = predictor.predict([configs[i] for i in test], space)
        truth = np.asarray(accuracies, np.float64)[test]
        report = FitReport(len(train), len(test), float(np.sqrt(np.mean((predicted - truth) ** 2))), kendall_tau(predicted, truth))
        predictor.report = report
        return predictor, report

    def save(self, path: str | Path) -> None:
        """Weights as a tensor-only .pt (loads with weights_only=True) plus a JSON of the rest."""
        path = Path(path)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(self.network.state_dict(), tmp)
        tmp.replace(path.with_suffix(".pt"))
        meta = {"space": self.space_name, "mean": self.mean, "std": self.std, "hidden": self.hidden,
                "precision_drop": dict(self.precision_drop), "report": self.report.to_json() if self.report else None}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, space) -> "AccuracyPredictor":
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            state = torch.load(path.with_suffix(".pt"), weights_only=True, map_location="cpu")
        except (OSError, json.JSONDecodeError, RuntimeError) as exc:
            raise UsageError(f"{path}: cannot load the accuracy predictor ({exc})") from exc
        if meta.get("space") != space.name:
            raise UsageError(f"{path}: accuracy predictor is for space {meta.get('space')!r}, not {space.name!r}")
        network = _mlp(encode([], space).shape[1], int(meta["hidden"]))
        network.load_state_dict(state)
        network.eval()
        report = FitReport(**meta["report"]) if meta.get("report") else None
        return cls(space.name, network, float(meta["mean"]), float(meta["std"]), int(meta["hidden"]),
                   dict(meta["precision_drop"]), report)
