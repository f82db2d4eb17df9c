"""The SearchSpace protocol: any family plugs into the same evolutionary search; OFA implements it torch-free."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgekit.models.ofa import SPACE_NAMES, count_macs, count_params, get_space, sample, smallest, subnet_blocks
from edgekit.models.ofa.specs import block_ops
from edgekit.search.evolution import Budget, NoFeasibleCandidate, evolve
from edgekit.search.family import Searchable, _FACTORIES, searchable
from edgekit.search.latency import SubnetLatency
from edgekit.search.run import selection_json
from edgekit.search.select import select
from edgekit.search.space import AccuracyModel, Block, SearchSpace
from edgekit.targets import load_target
from edgekit.targets.latency import OpCost

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = tuple(range(8, 257, 8))


# -- a toy family: one fully connected layer of a chosen width -------------------------------------
@dataclass(frozen=True)
class Dense:
    width: int

    @property
    def key(self) -> str:
        return f"dense-{self.width}"

    def ops(self) -> list[OpCost]:
        return [OpCost("matmul", 1000 * self.width, 1000 * self.width, 1000 + self.width)]


class WidthAccuracy:
    """Accuracy 1 - 8 / width (wider is better), int8 costs 20 points."""

    precisions = ("fp32", "int8")

    def predict(self, configs, precision: str = "fp32") -> np.ndarray:
        return np.array([1 - 8 / w - (0.2 if precision == "int8" else 0.0) for w in configs])


class Widths:
    """A 1-D search space: a config is a width; mutation steps to a neighbouring width (or, with probability
    ``prob``, jumps anywhere), crossover picks a parent's."""

    name = "toy-widths"

    def sample(self, rng: random.Random) -> int:
        return rng.choice(WIDTHS)

    def mutate(self, config: int, rng: random.Random, prob: float = 0.1) -> int:
        if rng.random() < prob:
            return rng.choice(WIDTHS)
        return WIDTHS[min(len(WIDTHS) - 1, max(0, WIDTHS.index(config) + rng.choice((-1, 1))))]

    def crossover(self, a: int, b: int, rng: random.Random) -> int:
        return a if rng.random() < 0.5 else b

    def smallest(self) -> int:
        return WIDTHS[0]

    def blocks(self, config: int) -> list[Dense]:
        return [Dense(config)]

    def macs(self, config: int) -> int:
        return 1000 * config

    def params(self, config: int) -> int:
        return 1000 * config

    def memory_mb(self, config: int, precision: str) -> float:
        return 1000 * config * {"fp32": 4, "fp16": 2, "int8": 1}[precision] / 1e6

    def accuracy_model(self, path=None) -> WidthAccuracy:
        return WidthAccuracy()

    def config_dict(self, config: int) -> dict:
        return {"width": config}

    def config_label(self, config: int) -> str:
        return f"width {config}"


def test_the_toy_and_every_ofa_space_implement_the_protocol():
    assert isinstance(Widths(), SearchSpace) and isinstance(WidthAccuracy(), AccuracyModel)
    for name in SPACE_NAMES:
        space = get_space(name)
        assert isinstance(space, SearchSpace)
        assert all(isinstance(b, Block) for b in space.blocks(space.smallest()))
    assert isinstance(searchable("ofa-mbv3").predictor(), AccuracyModel)


def test_evolution_finds_the_known_best_width_under_the_budget():
    # latency 0.01 ms per unit of width, accuracy grows with width: the best under 1 ms is width 96
    def evaluate(configs, option):
        return [0.01 * w for w in configs], [1 - 8 / w for w in configs]

    result = evolve(Widths(), ["cpu/fp32"], evaluate, Budget(1.0), random.Random(0), population=10, generations=10)
    assert result.best.config == 96 and result.best.latency_ms == pytest.approx(0.96)
    assert all(c.config <= 96 for c in result.pareto if c.latency_ms <= 1.0)


def test_select_on_the_toy_matches_brute_force_over_the_whole_space():
    target, space, budget = load_target("rpi5"), Widths(), 0.03
    selection = select(space, target, budget, space.accuracy_model(), seed=0, population=12, generations=8)
    best = selection.result.best
    brute = []
    for option in (o for o in selection.sources):
        latency = SubnetLatency(space, target, option.unit, option.precision)
        accuracy = space.accuracy_model().predict(WIDTHS, option.precision)
        brute += [(a, w, option) for w, a in zip(WIDTHS, accuracy) if latency.predict(w) * (1 + selection.margin) <= budget]
    accuracy, width, option = max(brute, key=lambda t: t[0])
    assert (best.config, best.option, best.accuracy) == (width, option, pytest.approx(accuracy))
    assert 8 < width < 256  # the budget binds somewhere inside the space
    data = selection_json(Searchable("toy", space), target, selection)
    assert data["best"]["config"] == {"width": width} and data["space"] == "toy-widths"


def test_nothing_fits_names_the_toys_smallest_config():
    space = Widths()
    with pytest.raises(NoFeasibleCandidate, match=r"smallest width 8, 0\.0 MB\)"):
        select(space, load_target("rpi5"), 1e-6, space.accuracy_model())


def test_a_registered_family_is_searchable_from_the_cli(monkeypatch, capsys):
    from edgekit.cli import main

    monkeypatch.setitem(_FACTORIES, "toy-widths", Widths)
    code = main(["select", "--model", "toy-widths", "--target", "rpi5", "--budget-ms", "0.03", "--json"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "toy-widths" and set(data["best"]["config"]) == {"width"}


# -- once-for-all as a search space -------------------------------------------------------------------
def test_ofa_blocks_costs_and_memory_agree_with_the_module_functions():
    space = get_space("ofa-mbv3-shapes")
    for seed in range(4):
        config = sample(space, random.Random(seed))
        specs = subnet_blocks(config, space)
        assert space.blocks(config) == specs
        assert [b.ops() for b in space.blocks(config)] == [block_ops(b) for b in specs]
        assert space.macs(config) == count_macs(config, space) and space.params(config) == count_params(config, space)
        weights = sum(op.weight_elems for b in specs for op in block_ops(b))
        live = max(b.in_ch * b.in_hw ** 2 + b.mid * b.out_hw ** 2 + b.out_ch * b.out_hw ** 2 for b in specs)
        assert space.memory_mb(config, "fp16") == (weights + live) * 2 / 1e6
    assert space.smallest() == smallest(space) and space.config_dict(space.smallest()) == smallest(space).to_dict()


def test_the_specs_moved_out_of_the_torch_module_and_are_re_exported():
    from edgekit.models.ofa import blocks, specs

    assert blocks.BlockSpec is specs.BlockSpec and blocks.block_ops is specs.block_ops
    assert blocks.subnet_blocks is specs.subnet_blocks and blocks.space_blocks is specs.space_blocks


def test_readme_int8_selection_is_unchanged():
    """`edgekit select --target rpi5 --budget-ms 30 --precision int8` with seed 0 chose this before the protocol."""
    family = searchable("ofa-mbv3")
    target = load_target("rpi5")
    selection = select(family.space, target, 30, family.predictor(), precision="int8", seed=0, time_limit_s=None,
                       tables=family.tables(target, None))
    best = selection_json(family, target, selection)["best"]
    assert best["config"] == {"ks": [5, 5, 5, 7, 5, 7, 5, 5, 5, 5, 7, 7, 3, 3, 7, 5, 3, 7, 7, 3],
                              "e": [6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 3, 6, 6, 3, 4, 6, 3, 6, 6, 6], "d": [4, 4, 4, 3, 4], "r": 56}
    assert (best["unit"], best["precision"], best["format"]) == ("cpu", "int8", "tflite")
    assert (best["latency_ms"], best["accuracy"], best["memory_mb"]) == (2.7777, 0.9923, 1.343)
    assert selection.result.evaluated == 2150


# -- torch stays out of selection ----------------------------------------------------------------------
def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_select_never_imports_torch():
    out = _run("import sys; from edgekit.cli import main; "
               "code = main(['select', '--target', 'rpi5', '--budget-ms', '30', '--json']); "
               "print(code, 'torch' in sys.modules)")
    *data, last = out.strip().splitlines()
    assert last == "0 False", out
    assert json.loads("\n".join(data))["best"]["latency_ms"] <= 30


def test_latency_prediction_and_the_search_modules_never_import_torch():
    out = _run("import sys, random\n"
               "from edgekit.models.ofa import get_space\n"
               "from edgekit.search import evolution, family, latency, run, select, space\n"
               "from edgekit.targets import load_target\n"
               "s = get_space('ofa-mbv3-shapes')\n"
               "latency.SubnetLatency(s, load_target('jetson'), 'gpu', 'fp16').predict(s.sample(random.Random(0)))\n"
               "s.accuracy_model().predict([s.smallest()], 'int8')\n"
               "print('torch' in sys.modules)")
    assert out.strip() == "False"


# -- the accuracy predictor's torch-free weights -------------------------------------------------------
def test_predictor_npz_is_the_pt_regenerated(tmp_path):
    import torch

    from edgekit.models.ofa.predictor import default_predictor_path
    from edgekit.models.ofa.predictor_weights import npz_path, pt_to_npz, read_weights

    shipped = default_predictor_path("ofa-mbv3-shapes")
    reference = torch.load(shipped.with_suffix(".pt"), weights_only=True)
    copy = read_weights(shipped)
    assert list(copy) == sorted(reference)
    for name, tensor in reference.items():
        assert copy[name].dtype == np.float32 and np.array_equal(copy[name], tensor.numpy()), name
    shutil.copy(shipped.with_suffix(".pt"), tmp_path / "p.pt")
    assert pt_to_npz(tmp_path / "p").read_bytes() == npz_path(shipped).read_bytes()  # byte-reproducible


def test_predictor_loads_from_the_pt_alone_and_saves_both(tmp_path):
    from edgekit.models.ofa import AccuracyPredictor
    from edgekit.models.ofa.predictor import default_predictor_path

    space = get_space("ofa-mbv3-shapes")
    shipped = default_predictor_path(space.name)
    for suffix in (".pt", ".json"):
        shutil.copy(shipped.with_suffix(suffix), tmp_path / f"old{suffix}")  # a predictor saved before the .npz
    configs = [sample(space, random.Random(i)) for i in range(8)]
    old = AccuracyPredictor.load(tmp_path / "old", space)
    assert np.array_equal(old.predict(configs, "int8"), space.accuracy_model().predict(configs, "int8"))
    old.save(tmp_path / "new")
    assert (tmp_path / "new.npz").read_bytes() == (shipped.with_suffix(".npz")).read_bytes()
