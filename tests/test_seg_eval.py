"""Segmenter bundles: export (fp32, int8, VWFormer head, a tiny random SegFormer), held-out mIoU in the
manifest, ``edgekit eval`` against torch on the same scenes, its errors, and that it imports no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.cli import main
from edgekit.models.seg.data import NUM_CLASSES, make_scenes
from edgekit.models.seg.source import load_builtin
from edgekit.models.seg.train import evaluate
from edgekit.runtimes import read_bundle

ROOT = Path(__file__).resolve().parents[1]


def _export(out: Path, *args: str) -> None:
    assert main(["export", *args, "--target", "host", "--bench-runs", "3", "--out", str(out)]) == 0


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, *args: str) -> str:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    assert code in (1, 2), captured
    lines = [line for line in captured.err.splitlines() if not line.startswith("edgekit: ")]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "fp32"
    _export(out, "--model", "seg-simple")
    return out


def test_eval_matches_torch_on_the_same_scenes(seg_bundle, capsys):
    manifest = read_bundle(seg_bundle).manifest
    assert manifest.task == "segmentation" and manifest.extra["num_classes"] == NUM_CLASSES
    accuracy = manifest.validation["accuracy"]
    assert accuracy["metric"] == "mIoU" and accuracy["exported"]["samples"] == 256
    assert manifest.provenance["training"]["val_miou"] > 0.5
    report = _eval(capsys, str(seg_bundle), "--samples", "64")
    net, _ = load_builtin("seg-simple")
    images, labels = make_scenes(64, 64, split="val")
    assert abs(report["miou"] - evaluate(net, images, labels, NUM_CLASSES).miou) < 0.005
    assert report["samples"] == 64 and len(report["per_class_iou"]) == NUM_CLASSES
    assert np.array(report["confusion"]).sum() == 64 * 64 * 64
    train = _eval(capsys, str(seg_bundle), "--samples", "16", "--data", "train")
    assert train["data"] == "16 train scenes at 64x64"


def test_int8_variant_records_miou_before_and_after(tmp_path):
    out = tmp_path / "int8"
    _export(out, "--model", "seg-simple", "--precision", "int8")
    manifest = read_bundle(out).manifest
    vs = manifest.validation["precision"]["vs_fp32"]
    assert vs["metric"] == "mIoU" and vs["accuracy_fp32"] > 0.5 and abs(vs["accuracy_drop"]) < 0.02
    assert vs["top1_agreement"] > 0.95  # per pixel
    assert manifest.validation["accuracy"]["exported"]["miou"] == vs["accuracy"]


def test_vwformer_head_exports_to_onnx(tmp_path, capsys):
    _export(tmp_path / "vw", "--model", "seg-vwformer")
    assert _eval(capsys, str(tmp_path / "vw"), "--samples", "4")["samples"] == 4


def test_hf_segformer_from_a_local_directory_exports_and_evaluates(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SegformerConfig(num_labels=NUM_CLASSES, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32],
                                          num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16, sr_ratios=[4, 2, 1, 1])
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "segformer")
    _export(tmp_path / "b", "--model", f"hf-seg:{tmp_path / 'segformer'}")
    manifest = read_bundle(tmp_path / "b").manifest
    assert manifest.provenance["architecture"] == "SegformerForSemanticSegmentation"
    assert manifest.graphs["model"].outputs[0].shape[1:] == (NUM_CLASSES, 64, 64)
    report = _eval(capsys, str(tmp_path / "b"), "--samples", "8")
    assert 0 <= report["miou"] <= 1
    message = _error(capsys, "export", "--model", f"hf-seg:{tmp_path / 'nothing'}", "--out", str(tmp_path / "c"))
    assert "no such directory" in message


class _NotASegmenter(nn.Module):
    task = "segmentation"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(image.mean((2, 3)))


def not_a_segmenter() -> nn.Module:
    torch.manual_seed(0)
    return _NotASegmenter()


def test_eval_errors(seg_bundle, tmp_path, capsys):
    _export(tmp_path / "cnn", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--input-shape", "1,3,32,32")
    assert "task is 'generic', not 'segmentation'" in _error(capsys, "eval", str(tmp_path / "cnn"))
    _export(tmp_path / "flat", "--model", "tests.test_seg_eval:not_a_segmenter", "--input-shape", "1,3,64,64")
    assert "has shape (16, 10) float32: expected segmentation logits" in _error(capsys, "eval", str(tmp_path / "flat"))
    assert "fixed at 64x64" in _error(capsys, "eval", str(seg_bundle), "--size", "32")
    images, labels = make_scenes(2, 64)
    np.savez(tmp_path / "ok.npz", images=images, labels=labels)
    assert _eval(capsys, str(seg_bundle), "--data", str(tmp_path / "ok.npz"))["samples"] == 2
    np.savez(tmp_path / "range.npz", images=images, labels=labels + NUM_CLASSES)
    assert "labels go up to" in _error(capsys, "eval", str(seg_bundle), "--data", str(tmp_path / "range.npz"))
    np.savez(tmp_path / "nolabels.npz", images=images)
    assert "no array 'labels'" in _error(capsys, "eval", str(seg_bundle), "--data", str(tmp_path / "nolabels.npz"))
    np.savez(tmp_path / "small.npz", images=images[:, :, :32, :32], labels=labels[:, :32, :32])
    assert "the model takes" in _error(capsys, "eval", str(seg_bundle), "--data", str(tmp_path / "small.npz"))
    assert "expected val, train or a FILE.npz" in _error(capsys, "eval", str(seg_bundle), "--data", "test")
    assert "not a bundle directory" in _error(capsys, "eval", str(tmp_path / "missing"))


def test_eval_imports_no_torch(seg_bundle):
    code = ("import sys\nfrom edgekit.cli import main\n"
            f"code = main(['eval', {str(seg_bundle)!r}, '--samples', '4', '--json'])\n"
            "print('TORCH', 'torch' in sys.modules, code)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "TORCH False 0"


def test_bench_formats_all_shows_a_segmenters_miou(tmp_path, capsys):
    """Regression: bench --formats all read only a classifier's held-out top-1, so a segmenter showed '-'."""
    import json

    from edgekit.cli import main

    out = tmp_path / "seg"
    assert main(["export", "--model", "seg-simple", "--bench-runs", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["bench", str(out), "--formats", "all", "--runs", "3", "--warmup", "1", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["top1"] is None and 0.55 <= row["miou"] <= 0.65
