"""``edgekit select --model REF --eval-data F --metric M``: any model's candidates, exported and measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edgekit.cli import main  # noqa: E402

TINY = "tests.fixtures.tiny_models:tiny_cnn"  # (1, 3, 16, 16) -> 5 classes


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> Path:
    """Labels: the model's own top-1 on 80% of the samples, a wrong class on the rest (fp32 top-1 about 80%)."""
    from tests.fixtures.tiny_models import tiny_cnn

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((264, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        labels = tiny_cnn()(torch.from_numpy(inputs)).argmax(1).numpy()
    wrong = rng.random(len(labels)) < 0.2
    labels[wrong] = (labels[wrong] + 1) % 5
    path = tmp_path_factory.mktemp("eval") / "val.npz"
    np.savez(path, inputs=inputs, labels=labels)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _select(capsys, *args) -> tuple[int, dict | str]:
    capsys.readouterr()
    code = main(["select", "--model", TINY, *args, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err + captured.out)  # --json: errors as JSON


def test_choice_is_the_most_accurate_fitting_candidate_and_the_cache_answers_again(val, cache, capsys):
    import edgekit.runtimes as rt

    code, data = _select(capsys, "--eval-data", str(val), "--metric", "top1", "--target", "rpi5", "--budget-ms", "20",
                         "--levels", "0.5", "--precision", "fp32")
    assert code == 0, data
    best, counts = data["best"], data["measured"]
    assert best["accuracy_source"] == "measured (top1 on 200 eval samples)" and data["calibration_samples"] == 64
    assert 0.7 <= next(c["accuracy"] for c in data["candidates"] if c["level"] == 0 and c["measured"]) <= 0.9
    # exhaustive: score every candidate's file; the choice equals the best of those that fit
    with np.load(val) as archive:
        inputs, labels = archive["inputs"][64:], archive["labels"][64:]
    exhaustive = []
    for bundle in sorted((cache / "select").glob("*/L*")):
        session = rt.load(bundle, threads=1)
        out = next(iter(session.run({session.inputs[0].name: inputs}).values()))
        exhaustive.append(float(np.mean(out.argmax(1) == labels)))
    assert counts["candidates"] == len(exhaustive) == 4  # 2 levels x fp32 x (onnx, tflite)
    assert best["accuracy"] == pytest.approx(max(exhaustive))
    assert counts["accuracy_measured"] < counts["candidates"]  # lazy: the bound spared at least one accuracy run
    # another budget: every file and score comes from the cache
    code, again = _select(capsys, "--eval-data", str(val), "--target", "rpi5", "--budget-ms", "5", "--levels", "0.5",
                          "--precision", "fp32")
    assert code == 0 and again["measured"]["exported_now"] == 0 and again["measured"]["accuracy_runs_now"] == 0


def test_budget_nothing_meets_names_the_fastest(val, cache, capsys):
    code, err = _select(capsys, "--eval-data", str(val), "--target", "host", "--budget-ms", "0.0001", "--precision", "fp32")
    assert code == 1 and "no candidate meets 0.0001 ms" in err and "the fastest is dense, cpu/fp32/" in err


def test_export_budget_writes_the_measured_choice(val, cache, tmp_path, capsys):
    out = tmp_path / "chosen"
    assert main(["export", "--model", TINY, "--eval-data", str(val), "--budget-ms", "20", "--target", "host",
                 "--precision", "fp32", "--out", str(out)]) == 0
    search = json.loads((out / "manifest.json").read_text())["extra"]["search"]
    assert search["by"] == "measurement" and search["budget_held"] and search["choice"]["latency_source"] == "measured"
    assert "budget held" in capsys.readouterr().out


@pytest.mark.parametrize("arrays, args, message", [
    ({"inputs": np.zeros((8, 3, 8, 8), np.float32), "labels": np.zeros(8, np.int64)}, [],
     "inputs shaped (N, 3, 8, 8) do not fit the model's input 'input' [batch, 3, 16, 16]"),
    ({"inputs": np.zeros((8, 3, 16, 16), np.float32), "labels": np.full(8, 7)}, [],
     "labels span 7..7 but the model outputs 5 classes"),
    ({"inputs": np.zeros((8, 3, 16, 16), np.float32)}, [], "expected arrays 'inputs' (or 'images') and 'labels'"),
    ({"inputs": np.zeros((8, 3, 16, 16), np.float32), "labels": np.zeros(8, np.int64)}, ["--metric", "f1"],
     "--metric 'f1': expected top1, miou, mse or module:function"),
    ({"inputs": np.zeros((8, 3, 16, 16), np.float32), "labels": np.zeros(8, np.int64)}, ["--levels", "1.5"],
     "--levels 1.5: a compression level is the fraction of MACs removed, in [0, 1)"),
    ({"inputs": np.zeros((8, 3, 16, 16), np.float32), "labels": np.zeros(8, np.int64)}, ["--checkpoint", "w.pt"],
     "--checkpoint / --accuracy search a once-for-all supernet; --eval-data and generation budgets select by measurement"),
])
def test_bad_eval_data_and_options_are_one_line_errors(tmp_path, cache, capsys, arrays, args, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    code, err = _select(capsys, "--eval-data", str(path), "--target", "host", "--budget-ms", "5", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (cache / "select").exists() or not any((cache / "select").glob("*/L*"))


def test_segmenter_levels_are_selected_on_its_own_scenes(cache, capsys):
    """seg-simple has no search space: select measures its compression levels (pruned, then fine-tuned on its
    own training scenes) by mIoU on its held-out scenes; a budget nothing meets names the fastest."""
    base = ["select", "--model", "seg-simple", "--target", "rpi5", "--precision", "fp32", "--levels", "0.5",
            "--finetune-steps", "5", "--json"]
    capsys.readouterr()
    assert main([*base, "--budget-ms", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == "miou" and data["eval_data"] == "the family's held-out data" and data["eval_samples"] == 256
    measured = {(c["level"], c["format"]): c["accuracy"] for c in data["candidates"] if c["measured"]}
    dense = [v for (level, _), v in measured.items() if level == 0.0]
    assert dense and all(0.55 <= v <= 0.65 for v in dense)  # the shipped model's val mIoU (59.6 on 512 scenes)
    assert data["best"]["level"] == 0.0 and data["best"]["accuracy"] == max(measured.values())
    assert main([*base, "--budget-ms", "0.001"]) == 1
    assert "no candidate meets 0.001 ms" in capsys.readouterr().out


def test_a_model_without_search_space_or_data_asks_for_eval_data(cache, capsys):
    assert main(["select", "--model", TINY, "--target", "host", "--budget-ms", "5"]) == 2
    assert "no search space and no labelled data of its own: pass --eval-data val.npz" in capsys.readouterr().err


FIXED = '''
import torch
from torch import nn


class Fixed(nn.Module):
    input_shape = (1, 3, 16, 16)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2 * 16 * 16, 5)  # flattened features: one input size only

    def forward(self, x):
        return self.head(torch.flatten(self.conv(x), 1))


def build():
    torch.manual_seed(0)
    return Fixed().eval()
'''


def test_resolutions_are_candidates_and_a_fixed_size_model_is_refused(val, cache, tmp_path, capsys):
    code, data = _select(capsys, "--eval-data", str(val), "--target", "host", "--budget-ms", "5", "--precision", "fp32",
                         "--resolutions", "8,24")
    assert code == 0, data
    sizes = {c["resolution"] for c in data["candidates"]}
    assert sizes == {None, 8, 24} and data["best"]["measured"]
    model = tmp_path / "fixed.py"
    model.write_text(FIXED)
    code = main(["select", "--model", f"{model}:build", "--eval-data", str(val), "--target", "host", "--budget-ms", "5",
                 "--resolutions", "24"])
    err = capsys.readouterr().err
    assert code == 2 and "--resolutions 24: the model cannot take a 24x24 input" in err


def test_a_measured_latency_keeps_a_noise_margin():
    """Regression (benchmarks/select_any.py): a choice measured at 1.226 ms under a 1.25 ms budget re-timed above it;
    a measured latency now fits only with 5% to spare, a modeled one with the selection's margin."""
    from edgekit.measured_select import CandidateResult, MeasuredCandidate, MeasuredSelection
    from edgekit.search.eval_data import get_metric

    def result(ms: float, source: str) -> CandidateResult:
        return CandidateResult(MeasuredCandidate(0.0, "cpu", "fp32", "onnx"), ms, source)

    selection = MeasuredSelection(None, (), 1.25, 0.1, get_metric("top1"), 10, 0, 0, 0, result(1.0, "measured"))
    assert not selection.fits(result(1.226, "measured")) and selection.fits(result(1.19, "measured"))
    assert not selection.fits(result(1.19, "modeled")) and selection.fits(result(1.13, "modeled"))
