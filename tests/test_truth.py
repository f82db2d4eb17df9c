"""Device truth (issue 13): published points as checked data, reference models, the published calibration
shipped in the target TOMLs (reproducible from the data), its label and error, and `edgekit truth add`."""

from __future__ import annotations

import json

import pytest

from edgekit.cli import main
from edgekit.runtimes.errors import TargetError
from edgekit.targets import list_targets, load_target
from edgekit.targets.estimate import estimate
from edgekit.targets.latency import OpCost
from edgekit.targets.published import fit_group, fit_points, load_costs
from edgekit.targets.published_features import predict_published
from edgekit.targets.truth import load_points, parse_points, published_path

ROW = {"target": "jetson", "unit": "gpu", "runtime": "tensorrt", "precision": "fp16", "model": "resnet18", "ms": 2.0}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- the data and its checks -------------------------------------------------------------------------


def test_the_published_set_loads_and_splits_by_runtime():
    points = load_points(published_path())
    assert len(points.comparable) == 45 and len(points.apart) == 42
    assert {p.runtime for p, _ in points.apart} == {"ncnn", "tensorflow"}
    # every point keeps its quoted source
    assert all(p.source["quote"] and p.source["source_url"] for p in points.comparable)
    orin = [p for p in points.comparable if p.group == ("jetson-orin-nano", "gpu", "tensorrt", "fp16")]
    assert sorted((p.model, p.ms) for p in orin) == [("mobilenet_v3_large", 2.51209), ("resnet18", 1.99792),
                                                      ("resnet50", 4.80201)]


@pytest.mark.parametrize("change, message", [
    ({"target": "rpi9"}, r"x\.jsonl:1: unknown target 'rpi9'; known: coral-edgetpu, host, jetson-agx-orin, .*raspberry-pi-5"),
    ({"unit": "npu"}, r"x\.jsonl:1: target jetson-orin-nano has no unit 'npu'; units: gpu, cpu"),
    ({"ms": 0}, r"ms: expected a positive number of milliseconds, got 0"),
    ({"ms": -3.5}, r"ms: expected a positive number of milliseconds, got -3\.5"),
    ({"ms": None}, r"missing field 'ms'"),
    ({"precision": "fp8"}, r"precision: unknown 'fp8'; known: fp32, fp16, int8"),
    ({"colour": "red"}, r"unknown field 'colour'"),
])
def test_bad_points_are_named(tmp_path, change, message):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({**ROW, **change}) + "\n")
    with pytest.raises(TargetError, match=message):
        load_points(path)


def test_another_runtime_or_precision_is_shown_apart_not_fitted():
    points = parse_points([("a:1", {**ROW, "runtime": "ncnn"}), ("a:2", {**ROW, "unit": "cpu", "precision": "fp16",
                                                                         "runtime": "onnxruntime"}), ("a:3", ROW)])
    assert [p.origin for p in points.comparable] == ["a:3"]
    assert [why for _, why in points.apart] == ["runtime 'ncnn' is not one the unit runs (tensorrt)",
                                               "unit cpu of jetson-orin-nano does not run fp16 (fp32, int8)"]
    fits = fit_points(points)
    assert list(fits) == [("jetson-orin-nano", "gpu", "tensorrt", "fp16")] and fits[list(fits)[0]].points == 1


def test_a_fit_with_fewer_models_than_terms_is_refused():
    (point,) = parse_points([("a:1", ROW)]).comparable
    with pytest.raises(TargetError, match=r"a fit of 2 terms \(roofline_ms, ops\) needs at least 2 points of distinct "
                                          r"models, got 1"):
        fit_group([point], ("roofline_ms", "ops"), load_costs())


# --- reference models ----------------------------------------------------------------------------------


def test_reference_models_match_their_published_parameter_counts():
    from edgekit.models.reference import REFERENCE_MODELS

    counts = {name: sum(p.numel() for p in m.build().parameters()) for name, m in REFERENCE_MODELS.items()}
    assert counts == {"resnet18": 11_689_512, "resnet50": 25_557_032, "mobilenet_v1": 4_231_976,
                      "mobilenet_v2": 3_504_872, "mobilenet_v3_large": 5_483_032}
    for name, model in REFERENCE_MODELS.items():
        assert round(counts[name] / 1e6, 2) == model.published_params_m


def test_the_op_cost_cache_matches_an_export():
    pytest.importorskip("torch")
    from edgekit.tools.reference_costs import reference_costs

    assert reference_costs("mobilenet_v2", 224) == load_costs()["mobilenet_v2@224"]


# --- the shipped calibration ----------------------------------------------------------------------------


def test_the_toml_factors_are_reproduced_by_the_fit():
    fits = fit_points(load_points(published_path()))
    assert len(fits) == 11
    for (target, unit, runtime, precision), fit in fits.items():
        assert load_target(target).unit(unit).published_fit(runtime, precision) == fit
    shipped = {(t.name, u.name, f.runtime, f.precision) for t in list_targets() for u in t.units for f in u.published}
    assert shipped == set(fits)
    # the gaps the check exposed are filled: the Pi 4 predicts fp16, the Snapdragon NPU predicts fp16 (no peak)
    assert ("raspberry-pi-4", "cpu", "litert", "fp16") in fits
    npu = fits[("snapdragon-8-gen-3", "npu", "litert", "fp16")]
    assert set(npu.terms) == {"gmac", "ops"} and npu.cv_median_error == pytest.approx(1.21, abs=0.01)


def test_estimates_use_the_published_fit_and_carry_its_error(tmp_path):
    jetson = load_target("jetson")
    ops = [OpCost("conv", 1_814_000_000, 11_000_000, 5_000_000)] + [OpCost("conv", 0)] * 22
    found = estimate(jetson, "gpu", "fp16", ops=ops, directory=tmp_path)
    fit = jetson.unit("gpu").published_fit("tensorrt", "fp16")
    assert found.source == "calibrated (published)" and found.details["error"] == fit.cv_median_error
    assert found.notes == (fit.label(),) and "cross-validated" in found.notes[0]
    assert found.ms == pytest.approx(predict_published(fit, ops, jetson, "gpu"))
    # no published point for int8 on this unit: the datasheet roofline, labelled modeled
    assert estimate(jetson, "gpu", "int8", ops=ops, directory=tmp_path).source == "modeled"
    # a CPU fit is for all of its cores: 1 thread keeps the roofline
    rpi4 = load_target("rpi4")
    assert estimate(rpi4, "cpu", "fp16", ops=ops, directory=tmp_path).source == "calibrated (published)"
    assert estimate(rpi4, "cpu", "fp16", ops=ops, threads=1, directory=tmp_path).source == "modeled"
    # the Snapdragon NPU publishes no fp16 peak, yet now predicts fp16
    npu = estimate(load_target("sd8gen3"), "npu", "fp16", ops=ops, fmt="tflite", directory=tmp_path)
    assert npu.source == "calibrated (published)" and npu.ms > 0


def test_targets_show_labels_jetson_numbers_with_the_published_error(tiny_bundle, cache, capsys):
    assert main(["targets", "show", "jetson", "--model", str(tiny_bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    gpu = next(r for r in data["model_estimates"]["latency"] if (r["unit"], r["precision"]) == ("gpu", "fp16"))
    assert gpu["source"] == "calibrated (published)" and gpu["error"] == pytest.approx(1.288)
    rows = {(r["unit"], r["precision"]): r for r in data["published"]}
    assert (rows[("gpu", "fp16")]["points"], rows[("gpu", "fp16")]["cv_median_error"]) == (3, pytest.approx(1.288))
    assert rows[("gpu", "int8")]["points"] == 0
    assert main(["targets", "show", "jetson", "--model", str(tiny_bundle)]) == 0
    text = capsys.readouterr().out
    assert "calibrated (published)" in text and "no published points: datasheet roofline" in text and "x1.29" in text


def test_select_margin_defaults_to_the_published_error():
    from edgekit.models.ofa import get_space
    from edgekit.search.latency import SubnetLatency
    from edgekit.search.select import default_margin

    space = get_space("ofa-mbv3-tiny")
    jetson = load_target("jetson")
    fp16 = SubnetLatency(space, jetson, "gpu", "fp16")
    assert fp16.source == "calibrated (published)" and default_margin([fp16]) == pytest.approx(0.288)
    assert default_margin([fp16, SubnetLatency(space, jetson, "gpu", "int8")]) == pytest.approx(0.288)
    assert default_margin([SubnetLatency(space, jetson, "gpu", "int8")]) == 0.1
    coral = SubnetLatency(space, load_target("coral"), "tpu", "int8")
    assert default_margin([coral]) == pytest.approx(0.6, abs=0.01)


# --- your own points ---------------------------------------------------------------------------------------


def test_truth_add_refits_from_a_user_file(tmp_path, cache, capsys):
    csv = tmp_path / "mine.csv"
    csv.write_text("target,unit,runtime,precision,model,ms,source\n"
                   "jetson,gpu,tensorrt,fp16,mobilenet_v2,1.9,my bench\n"
                   "rpi5,cpu,ncnn,fp32,resnet18,20,ncnn run\n")
    assert main(["truth", "add", str(csv), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["added"] == 2 and len(result["apart"]) == 1 and "ncnn" in result["apart"][0]
    refit = result["fits"]["jetson-orin-nano/gpu/tensorrt/fp16"]
    assert refit["points"] == 4 and "mobilenet_v2" in refit["models"]
    assert main(["truth", "add", str(csv), "--json"]) == 0  # the same file again adds nothing
    assert json.loads(capsys.readouterr().out)["added"] == 0

    jetson = load_target("jetson")
    ops = [OpCost("conv", 300_000_000)] * 3
    mine = estimate(jetson, "gpu", "fp16", ops=ops)  # the refit (in the cache) wins over the shipped fit
    shipped = jetson.unit("gpu").published_fit("tensorrt", "fp16")
    assert mine.source == "calibrated (published)" and "4 published points" in mine.notes[0]
    assert mine.ms != pytest.approx(predict_published(shipped, ops, jetson, "gpu"))
    assert main(["targets", "show", "jetson", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["published"] if (r["unit"], r["precision"]) == ("gpu", "fp16"))
    assert (row["points"], row["fit"]) == (4, "yours (edgekit truth add)")
