"""``edgekit compress`` end to end on a tiny user segmenter with .npz data: the report, the manifest's
``compression`` record, the accuracy guard, and a one-line error for each bad input (nothing written)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from edgekit.cli import main
from tests.test_compress_prune import SIZE, TinySeg

CLASSES = 4
MODEL = "tests.test_compress_cli:trained_seg"


def scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrants of random classes; the class shows as the first channel's level under noise."""
    rng = np.random.default_rng(seed)
    quadrants = rng.integers(0, CLASSES, (n, 2, 2))
    labels = quadrants.repeat(SIZE // 2, axis=1).repeat(SIZE // 2, axis=2).astype(np.int64)
    images = rng.normal(0, 0.3, (n, 3, SIZE, SIZE)).astype(np.float32)
    images[:, 0] += labels - 1.5
    return images, labels


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict:
    torch.manual_seed(0)
    model = TinySeg(CLASSES)
    images, labels = (torch.from_numpy(a) for a in scenes(128, seed=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        index = torch.arange(16) + 16 * (step % 8)
        loss = torch.nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_seg() -> TinySeg:
    """The factory ``--model`` names: a TinySeg trained briefly on :func:`scenes` (cached per process)."""
    model = TinySeg(CLASSES)
    model.load_state_dict(_trained_state())
    return model.eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress-data")
    images, labels = scenes(32, seed=1)
    np.savez(root / "eval.npz", images=images, labels=labels)
    images, labels = scenes(64, seed=2)
    np.savez(root / "train.npz", images=images, labels=labels)
    np.savez(root / "calib.npz", images=scenes(16, seed=3)[0])
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _args(data, out, *more: str) -> list[str]:
    return ["compress", "--model", MODEL, "--eval-data", str(data / "eval.npz"), "--train-data", str(data / "train.npz"),
            "--calib-data", str(data / "calib.npz"), "--out", str(out), "--bench-runs", "3", *more]


def test_prune_finetune_int8_end_to_end(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, stdout, stderr = run_cli(capsys, *_args(data, out, "--prune", "0.5", "--quantize", "int8",
                                                  "--finetune-steps", "40", "--max-drop", "5", "--json"))
    assert code == 0, stdout + stderr
    report = json.loads(stdout)["compression"]
    assert [s["step"] for s in report["steps"]] == ["dense", "pruned", "fine-tuned", "int8"]
    dense, pruned, tuned, int8 = report["steps"]
    assert dense["miou"] > 0.9  # the factory's model segments the scenes
    assert abs(pruned["macs"] / dense["macs"] - 0.5) <= 0.02 and abs(report["macs_removed"] - 0.5) <= 0.02
    assert pruned["params"] < dense["params"] and tuned["macs"] == pruned["macs"]
    assert int8["precision"] == "int8" and int8["file_bytes"] < tuned["file_bytes"] / 2
    for step in report["steps"]:
        assert step["host_source"] == "measured" and step["host_ms"] > 0 and step["nonzero"] <= step["params"]
    assert report["drop_points"] == pytest.approx(100 * (dense["miou"] - int8["miou"]))
    assert report["drop_points"] <= 5 and report["finetune"]["steps"] == 40
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["extra"]["compression"]["steps"] == report["steps"]
    images, _ = scenes(2, seed=9)
    np.save(tmp_path / "x.npy", images)
    code, stdout, stderr = run_cli(capsys, "run", str(out), "--input", str(tmp_path / "x.npy"),
                                   "--out", str(tmp_path / "o"))
    assert code == 0, stdout + stderr
    assert np.load(tmp_path / "o" / "output.npy").shape == (2, CLASSES, SIZE, SIZE)
    code, stdout, stderr = run_cli(capsys, "eval", str(out), "--data", str(data / "eval.npz"), "--json")
    assert code == 0, stdout + stderr
    assert json.loads(stdout)["miou"] == pytest.approx(int8["miou"])  # edgekit eval agrees with the report


def test_two_four_sparsity_for_jetson_enables_sparse_kernels(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, stdout, stderr = run_cli(capsys, *_args(data, out, "--sparsity", "2:4", "--finetune-steps", "5",
                                                  "--target", "jetson", "--allow-drop"))
    assert code == 0, stdout + stderr
    assert "sparsified 2:4" in stdout and "modeled" in stdout and "measured" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["extra"]["compression"]
    assert record["sparsity"] == "2:4" and record["weight_sparsity"] == pytest.approx(0.5)
    assert [s["step"] for s in record["steps"]] == ["dense", "sparsified 2:4", "fine-tuned"]
    assert record["steps"][-1]["target_ms"] > 0 and record["steps"][-1]["target_source"] in ("modeled", "calibrated")
    kit = manifest["extra"]["kits"]["tensorrt"]
    assert kit["sparsity"] and "--sparsity=enable" in (out / "build_engine.sh").read_text()


def test_accuracy_guard_fails_with_both_numbers_and_writes_nothing(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    args = _args(data, out, "--prune", "0.9", "--finetune-steps", "0")
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 1 and not out.exists()
    assert "mIoU fell from" in stderr and "(dense) to" in stderr and "> --max-drop 1" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    code, stdout, stderr = run_cli(capsys, *args, "--allow-drop", "--json")
    assert code == 0, stdout + stderr
    report = json.loads(stdout)["compression"]
    assert report["drop_points"] > 1 and (out / "manifest.json").exists()


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


BAD = [
    (["--prune", "1.0"], "--prune 1: expected a ratio strictly between 0 and 1"),
    (["--prune", "0"], "--prune 0: expected a ratio strictly between 0 and 1"),
    (["--magnitude", "1.5"], "--magnitude 1.5: expected a ratio strictly between 0 and 1"),
    (["--sparsity", "4:2"], "--sparsity 4:2: expected N:M with 0 < N < M"),
    (["--sparsity", "2:4", "--magnitude", "0.5"], "pass --sparsity N:M or --magnitude S, not both"),
    (["--quantize", "int4"], "--quantize int4: expected one of int8, fp16"),
    (["--allocation", "learned"], "--allocation learned: expected one of uniform, sensitivity"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_options(data, tmp_path, capsys, extra, message):
    out = tmp_path / "bundle"
    code, _, stderr = run_cli(capsys, *_args(data, out, *extra))
    assert code != 0 and message in stderr and not out.exists(), stderr
    assert len(stderr.strip().splitlines()) == 1


def _bad_data(tmp_path):
    images, labels = scenes(4, seed=5)
    return {
        "empty": (_write(tmp_path / "e.npz", images=images[:0], labels=labels[:0]), "images is empty (0 samples)"),
        "shape": (_write(tmp_path / "s.npz", images=images[:, :, :16], labels=labels[:, :16]),
                  "images shaped (N, 3, 16, 32): the model takes (N, 3, 32, 32)"),
        "rank": (_write(tmp_path / "r.npz", images=images[0], labels=labels), "images shaped (3, 32, 32): expected (N, C, H, W)"),
        "dtype": (_write(tmp_path / "d.npz", images=(images * 50).astype(np.int32), labels=labels),
                  "images are int32: expected float32"),
        "label dtype": (_write(tmp_path / "l.npz", images=images, labels=labels.astype(np.float32)),
                        "labels are float32: expected integer class ids"),
        "label shape": (_write(tmp_path / "ls.npz", images=images, labels=labels[:3]),
                        "labels shaped (3, 32, 32): expected one (H, W) map per image"),
        "negative": (_write(tmp_path / "n.npz", images=images, labels=labels - 1), "labels go down to -1"),
        "classes": (_write(tmp_path / "c.npz", images=images, labels=labels + 4),
                    "labels go up to 7 but the model outputs 4 classes"),
        "missing": (_write(tmp_path / "m.npz", pictures=images), "no array 'images'"),
    }


CASES = ["empty", "rank", "dtype", "label dtype", "label shape", "negative", "classes", "missing"]


# The eval data set a user model's input shape, so a wrong image size shows against the other data.
@pytest.mark.parametrize("option,case", [("--eval-data", c) for c in CASES] + [("--train-data", c) for c in CASES]
                         + [("--train-data", "shape")])
def test_bad_data(data, tmp_path, capsys, case, option):
    path, message = _bad_data(tmp_path)[case]
    out = tmp_path / "bundle"
    args = _args(data, out, "--prune", "0.5")
    args[args.index(option) + 1] = path
    code, _, stderr = run_cli(capsys, *args)
    assert code != 0 and message in stderr and option in stderr and not out.exists(), stderr
    assert len(stderr.strip().splitlines()) == 1


def test_user_model_needs_its_data(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, _, stderr = run_cli(capsys, "compress", "--model", MODEL, "--out", str(out))
    assert code != 0 and "pass --eval-data F.npz" in stderr and not out.exists(), stderr
    code, _, stderr = run_cli(capsys, "compress", "--model", MODEL, "--eval-data", str(data / "eval.npz"), "--prune", "0.5",
                              "--out", str(out))
    assert code != 0 and "needs --train-data F.npz" in stderr and not out.exists(), stderr
    code, _, stderr = run_cli(capsys, "compress", "--model", MODEL, "--eval-data", str(data / "eval.npz"),
                              "--quantize", "int8", "--out", str(out))
    assert code != 0 and "needs --calib-data F.npz" in stderr and not out.exists(), stderr


def classifier() -> torch.nn.Module:
    """Not a segmenter: (N, 3) logits."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()


def test_a_model_that_does_not_output_segmentation_logits_is_refused(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, _, stderr = run_cli(capsys, "compress", "--model", "tests.test_compress_cli:classifier", "--eval-data",
                              str(data / "eval.npz"), "--finetune-steps", "0", "--out", str(out))
    assert code != 0 and not out.exists()
    assert "output 'output' is shaped (1, 3) torch.float32: compress takes segmentation logits (N, C, H, W)" in stderr


def test_sensitivity_pruning_then_gradual_magnitude(data, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, stdout, stderr = run_cli(capsys, *_args(data, out, "--prune", "0.3", "--allocation", "sensitivity",
                                                  "--magnitude", "0.8", "--finetune-steps", "8", "--allow-drop", "--json"))
    assert code == 0, stdout + stderr
    report = json.loads(stdout)["compression"]
    assert [s["step"] for s in report["steps"]] == ["dense", "pruned", "fine-tuned + magnitude 80%"]
    assert report["allocation"] == "sensitivity" and len(set(report["rates"].values())) > 1
    assert set(report["sensitivity"]) == set(report["rates"]) and abs(report["macs_removed"] - 0.3) <= 0.02
    assert report["weight_sparsity"] == pytest.approx(0.8, abs=0.01) and report["schedule"].startswith("cubic")
    pruned, tuned = report["steps"][1:]
    assert tuned["nonzero"] < 0.35 * pruned["nonzero"]


def test_gradual_magnitude_alone_sparsifies_the_dense_model(data, tmp_path, capsys):
    """Regression: --magnitude without --prune skipped fine-tuning (the model was still the dense one), so the
    written bundle had no zero weights and the report showed the dense model's numbers."""
    out = tmp_path / "bundle"
    code, stdout, stderr = run_cli(capsys, *_args(data, out, "--magnitude", "0.8", "--finetune-steps", "8",
                                                  "--allow-drop", "--json"))
    assert code == 0, stdout + stderr
    report = json.loads(stdout)["compression"]
    assert [s["step"] for s in report["steps"]] == ["dense", "fine-tuned + magnitude 80%"]
    dense, tuned = report["steps"]
    assert report["weight_sparsity"] == pytest.approx(0.8, abs=0.01) and tuned["nonzero"] < 0.35 * dense["nonzero"]
