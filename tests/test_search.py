"""Latency-constrained selection with the shipped supernet's accuracy predictor."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.models.ofa import get_space, largest, sample, smallest
from edgekit.runtimes.errors import TargetError, UsageError
from edgekit.search.evolution import Budget, NoFeasibleCandidate, pareto_front
from edgekit.search.family import searchable
from edgekit.search.latency import SubnetLatency
from edgekit.search.select import select
from edgekit.targets import load_target

SPACE = get_space("ofa-mbv3-shapes")


@pytest.fixture(scope="module")
def predictor():
    return searchable("ofa-mbv3").predictor()


def test_shipped_predictor_was_scored_on_held_out_subnets(predictor):
    assert predictor.report.held_out >= 200 and predictor.report.kendall_tau >= 0.8 and predictor.report.rmse < 0.01
    big, small = predictor.predict([largest(SPACE), smallest(SPACE)])
    # measured on 5000 held-out images: largest 0.990, smallest 0.849 (edgekit/models/weights/ofa_mbv3_shapes.json)
    assert abs(big - 0.990) < 0.01 and abs(small - 0.849) < 0.02


def test_predictor_round_trip_and_wrong_space(predictor, tmp_path):
    from edgekit.search.accuracy import AccuracyPredictor

    predictor.save(tmp_path / "p")
    again = AccuracyPredictor.load(tmp_path / "p", SPACE)
    configs = [sample(SPACE, random.Random(i)) for i in range(5)]
    assert np.allclose(again.predict(configs), predictor.predict(configs))
    with pytest.raises(UsageError, match="is for space 'ofa-mbv3-shapes', not 'ofa-mbv3-tiny'"):
        AccuracyPredictor.load(tmp_path / "p", get_space("ofa-mbv3-tiny"))


def test_subnet_latency_equals_the_roofline_over_all_ops():
    from edgekit.models.ofa.blocks import block_ops, subnet_blocks
    from edgekit.targets.latency import predict_ms

    rpi = load_target("rpi5")
    model = SubnetLatency(SPACE, rpi, "cpu", "fp32")
    for seed in range(5):
        config = sample(SPACE, random.Random(seed))
        ops = [op for spec in subnet_blocks(config, SPACE) for op in block_ops(spec)]
        assert model.predict(config) == pytest.approx(predict_ms(ops, rpi, "cpu", "fp32").ms)


@pytest.mark.parametrize("budget", [2.0, 2.4, 3.0])  # gpu fp16 on the Jetson: fitted to published TensorRT points
def test_search_meets_the_budget_and_matches_brute_force(predictor, budget):
    jetson = load_target("jetson")
    selection = select(SPACE, jetson, budget, predictor, seed=0, unit="gpu", precision="fp16")
    best = selection.result.best
    assert best.latency_ms * (1 + selection.margin) <= budget
    latency = SubnetLatency(SPACE, jetson, "gpu", "fp16")
    rng = random.Random(123)
    pool = [sample(SPACE, rng) for _ in range(3000)]
    feasible = [c for c in pool if latency.predict(c) * (1 + selection.margin) <= budget]
    brute = max(predictor.predict(feasible, "fp16"))
    assert best.accuracy >= brute - 0.002


def test_nothing_fits_names_the_fastest(predictor):
    # the default margin is the largest error of the options: the gpu fp16 fit to published points (x1.288)
    with pytest.raises(NoFeasibleCandidate, match=r"no candidate meets 0\.01 ms and 8000 MB \(with a 28\.8% margin for "
                       r"prediction error\): the fastest is \d+\.\d+ ms") as info:
        select(SPACE, load_target("jetson"), 0.01, predictor)
    assert info.value.fastest.latency_ms > 0.01


@pytest.mark.parametrize("kwargs, error, message", [
    ({"unit": "dla0"}, TargetError, "has no unit 'dla0'"),
    ({"unit": "cpu", "precision": "fp16"}, UsageError, "unit cpu of jetson-orin-nano does not run fp16"),
    ({"memory_limit_mb": 0.01}, UsageError, r"--memory-mb 0\.01 is below the smallest model"),
    ({"precision": "int4"}, UsageError, "--precision 'int4' is not one of"),
])
def test_bad_selection_requests(predictor, kwargs, error, message):
    with pytest.raises(error, match=message):
        select(SPACE, load_target("jetson"), 1.0, predictor, **kwargs)


@pytest.mark.parametrize("value", [0, -1.0])
def test_budget_must_be_positive(value):
    with pytest.raises(UsageError, match="--budget-ms must be a number > 0"):
        Budget(value)


def test_pareto_front_is_monotone(predictor):
    selection = select(SPACE, load_target("rpi5"), 5.0, predictor, seed=1)
    front = selection.result.pareto
    assert pareto_front(front) == front
    assert all(a.latency_ms <= b.latency_ms and a.accuracy < b.accuracy for a, b in zip(front, front[1:]))


def test_every_target_can_select_or_says_why(predictor):
    from edgekit.targets import list_targets

    for target in list_targets():
        try:
            selection = select(SPACE, target, 50.0, predictor, seed=0, generations=3, population=20)
        except UsageError as exc:  # e.g. nothing in the profile can be predicted at all
            assert target.name in str(exc)
            continue
        assert selection.result.best.latency_ms <= 50.0
        assert set(selection.sources.values()) <= {"modeled", "calibrated", "calibrated (published)"}


def test_select_cli_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "pareto.png"
    code = main(["select", "--target", "jetson", "--budget-ms", "0.8", "--plot", str(plot), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"]["latency_ms"] <= 0.8 and data["best"]["latency_source"] == "modeled"
    assert data["best"]["accuracy_source"] == "predicted" and len(data["pareto"]) >= 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--budget-ms", "0"], "--budget-ms must be a number > 0"),
    (["--budget-ms", "0.001"], "no candidate meets 0.001 ms"),
    (["--budget-ms", "1", "--unit", "npu"], "has no unit 'npu'"),
])
def test_select_cli_errors(capsys, args, message):
    code = main(["select", "--target", "jetson", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_export_with_budget_on_host_records_search_and_measurement(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bundle"
    code = main(["export", "--target", "host", "--budget-ms", "3", "--precision", "fp32", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    search = manifest["extra"]["search"]
    assert search["budget_ms"] == 3 and search["best"]["format"] == "onnx"
    assert manifest["precision"] == search["best"]["precision"]
    assert manifest["extra"]["subnet"] == search["best"]["config"]
    assert isinstance(search["budget_held"], bool) and search["measured_ms"] == manifest["latency"][0]["ms"]


def test_a_budget_only_one_candidate_meets_still_searches(predictor):
    from edgekit.search.evolution import evolve

    space = get_space("ofa-mbv3-tiny")
    floor = smallest(space)

    def evaluate(configs, option):  # only the smallest subnet fits
        return [1.0 if c == floor else 2.0 for c in configs], [0.5] * len(configs)

    result = evolve(space, ["cpu/fp32"], evaluate, Budget(1.5), random.Random(0), population=10, generations=3)
    assert result.best.config == floor
