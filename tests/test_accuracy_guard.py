"""Issue 9, items 2 and 7: BatchNorm data and int8 calibration data are separate options, every step that
changes numbers is checked on held-out labels, and the parity line prints the whole criterion."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.models.ofa import get_space, make_shapes, resize, smallest

SPACE = get_space("ofa-mbv3-shapes")
SUBNET = smallest(SPACE).to_json()  # r=32: a BN pass on 512 images and a held-out pass take ~1 s each
TINY = "tests.fixtures.tiny_models:tiny_cnn"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ofa_export(tmp_path, *extra: str) -> list[str]:
    return ["export", "--model", "ofa-mbv3", "--subnet", SUBNET, "--target", "host", "--bench-runs", "0",
            "--out", str(tmp_path / "bundle"), *extra]


def test_noise_bn_data_is_refused_with_numbers_and_nothing_written(tmp_path, capsys):
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).random((64, 3, 32, 32)).astype(np.float32))
    code, _, err = run_cli(capsys, *_ofa_export(tmp_path, "--bn-data", str(tmp_path / "noise.npy")))
    assert code == 1, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]  # one line (progress lines aside)
    match = re.fullmatch(
        r"error: BatchNorm recalibration on --bn-data \S*noise\.npy drops held-out top-1 from (\d+\.\d)% to (\d+\.\d)% "
        r"\(512 samples; limit 5\.0 points\); nothing was written", line)
    assert match, line
    before, after = float(match[1]), float(match[2])
    assert before > 80 and before - after > 5
    assert not (tmp_path / "bundle").exists()


def test_shapes_bn_data_passes_and_the_manifest_records_each_step_with_its_samples(tmp_path, capsys):
    images, _ = make_shapes(256, seed=7, size=64)  # neither the held-out seed nor the family's calibration seed
    np.save(tmp_path / "shapes.npy", resize(images, 32).numpy().astype(np.float32))
    code, stdout, err = run_cli(capsys, *_ofa_export(tmp_path, "--bn-data", str(tmp_path / "shapes.npy")))
    assert code == 0, err
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["extra"]["bn_recalibration"].startswith("256 images of --bn-data")
    accuracy = manifest["validation"]["accuracy"]
    (bn,) = [step for step in accuracy["steps"] if step["step"] == "bn_recalibration"]
    assert bn["samples"] == 512 and "on 512 images of procedural shapes" in bn["baseline"]
    assert bn["before"] > 0.8 and abs(bn["after"] - bn["before"]) <= 0.05
    assert accuracy["exported"]["samples"] == 512 and abs(accuracy["exported"]["top1"] - bn["after"]) < 0.01
    assert "BatchNorm recalibration on --bn-data" in stdout and "(512 samples" in stdout
    assert "held-out top-1" in stdout


def test_default_export_records_held_out_accuracy(tmp_path, capsys):
    code, stdout, err = run_cli(capsys, *_ofa_export(tmp_path))
    assert code == 0, err
    accuracy = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["validation"]["accuracy"]
    assert accuracy["steps"] == [] and accuracy["exported"]["samples"] == 512
    assert 0.8 < accuracy["exported"]["top1"] <= 1.0  # README: smallest subnet 84.9% on 5000 images
    assert f"held-out top-1 {100 * accuracy['exported']['top1']:.1f}% (512 samples" in stdout


def test_calib_data_calibrates_int8_only_and_a_collapse_is_refused(tmp_path, capsys):
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).random((64, 3, 32, 32)).astype(np.float32))
    code, _, err = run_cli(capsys, *_ofa_export(tmp_path, "--calib-data", str(tmp_path / "noise.npy")))
    assert code == 2 and "--calib-data" in err and "int8" in err and "--bn-data" in err, err
    # Noise 10x brighter than images as int8 calibration: BatchNorm keeps the family's statistics (fp32 stays
    # above 80%), and the int8 variant's collapse (to ~60% here) is refused with its numbers.
    np.save(tmp_path / "bright.npy", 10 * np.load(tmp_path / "noise.npy"))
    code, _, err = run_cli(capsys, *_ofa_export(tmp_path, "--precision", "int8", "--calib-data", str(tmp_path / "bright.npy")))
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    match = re.search(r"int8 collapses accuracy on 512 held-out .* samples: (\d+\.\d)% fp32 -> (\d+\.\d)%", line)
    assert code == 1 and match and float(match[1]) > 80 and float(match[1]) - float(match[2]) > 5, line
    assert not (tmp_path / "bundle").exists()
    images, _ = make_shapes(64, seed=7, size=64)
    np.save(tmp_path / "shapes.npy", resize(images, 32).numpy().astype(np.float32))
    code, stdout, err = run_cli(capsys, *_ofa_export(tmp_path, "--precision", "int8", "--calib-data",
                                                     str(tmp_path / "shapes.npy"), "--calib-samples", "32"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["extra"]["bn_recalibration"].startswith("512 images of procedural shapes")
    variant = manifest["validation"]["precision"]
    assert variant["calibration"].startswith("32 samples of --calib-data")
    assert variant["vs_fp32"]["samples"] == 512 and variant["vs_fp32"]["accuracy_fp32"] > 0.8
    assert manifest["validation"]["accuracy"]["exported"]["top1"] == variant["vs_fp32"]["accuracy"]
    assert "(512 samples of held-out" in stdout


def test_parity_line_prints_the_whole_criterion(tmp_path, capsys):
    code, stdout, err = run_cli(capsys, "export", "--model", TINY, "--atol", "1e-12", "--bench-runs", "0",
                                "--out", str(tmp_path / "b"))
    assert code == 0, err
    (line,) = [x for x in stdout.splitlines() if x.startswith("parity vs torch")]
    assert "max rel error" in line and "atol 1e-12 + rtol 0.001 x |torch|" in line and "2 trials" in line, line
    assert line.endswith("- passed")
    code, _, err = run_cli(capsys, "export", "--model", TINY, "--atol", "1e-12", "--rtol", "0", "--bench-runs", "0",
                           "--out", str(tmp_path / "c"))
    assert code == 1 and "atol 1e-12 + rtol 0" in err, err
    assert not (tmp_path / "c").exists()


def test_multi_graph_parity_lines_print_the_criterion(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from edgekit.models.slm.config import SlmConfig
    from edgekit.models.slm.model import build_model, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model(SlmConfig.encoder_decoder(layers=3, d_model=32, n_heads=2, d_ff=64, max_length=64)),
                    tmp_path / "slm.pt")
    code, stdout, err = run_cli(capsys, "export", "--model", f"slm:{tmp_path / 'slm.pt'}", "--rtol", "0.002",
                                "--bench-runs", "0", "--out", str(tmp_path / "b"))
    assert code == 0, err
    lines = [x for x in stdout.splitlines() if x.startswith("parity")]
    assert [x.split(":")[0] for x in lines] == ["parity vs torch (encoder)", "parity vs torch (decoder)",
                                                 "parity of the chained graphs vs the source model"], stdout
    assert all("atol" in x and "rtol 0.002 x |torch|" in x and x.endswith("- passed") for x in lines), lines
