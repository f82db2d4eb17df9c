"""Training pieces: phase schedule, channel sorting, BN recalibration, data, and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from edgekit.models.ofa import (
    build_supernet,
    get_space,
    largest,
    make_shapes,
    materialize,
    randomize_weights,
    recalibrate_bn,
    smallest,
)
from edgekit.models.ofa.data import calibration_images, shape_batches
from edgekit.models.ofa.train import phase_choices

torch.set_num_threads(1)


def test_phase_schedule_widens_progressively():
    space = get_space("ofa-mbv3-shapes")
    assert phase_choices("full", space, 0.0) == {"ks": (7,), "e": (6,), "d": (4,)}
    assert phase_choices("kernel", space, 0.5) == {"ks": (3, 5, 7), "e": (6,), "d": (4,)}
    assert phase_choices("depth", space, 0.1)["d"] == (3, 4) and phase_choices("depth", space, 0.9)["d"] == (2, 3, 4)
    assert phase_choices("expand", space, 0.1)["e"] == (4, 6) and phase_choices("expand", space, 0.9)["e"] == (3, 4, 6)


def test_sort_channels_keeps_the_largest_subnet_and_orders_importance():
    net = randomize_weights(build_supernet("ofa-mbv3-tiny"), seed=3).eval()
    cfg = largest(net.space)
    x = torch.randn(2, 3, cfg.r, cfg.r, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = net(x, cfg)
        for block in net.blocks:
            block.sort_channels_()
        after = net(x, cfg)
    assert (before - after).abs().max().item() < 1e-5
    importance = net.blocks[5].project.conv.weight.abs().sum((0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_bn_recalibration_matches_data_statistics():
    net = randomize_weights(build_supernet("ofa-mbv3-tiny"), seed=4)
    sub = materialize(net, smallest(net.space))
    images = torch.from_numpy(calibration_images(96, 24))
    recalibrate_bn(sub, images, batch_size=32)
    with torch.no_grad():
        stem_out = sub.stem.conv(images)
    assert torch.allclose(sub.stem.bn.running_mean, stem_out.mean((0, 2, 3)), atol=1e-5)
    # cumulative average of per-batch unbiased variances (equal batches): close to the pooled variance
    assert torch.allclose(sub.stem.bn.running_var, stem_out.var((0, 2, 3)), rtol=0.05)
    assert not sub.training and sub.stem.bn.momentum == net.space.bn_momentum


def test_shapes_data_is_deterministic_and_balanced():
    a, la = make_shapes(300, seed=5, size=32)
    b, lb = make_shapes(300, seed=5, size=32)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(make_shapes(8, seed=6, size=32)[0], a[:8])
    assert torch.bincount(la[:256], minlength=10).tolist() == [26] * 6 + [25] * 4
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    r0 = next(shape_batches(8, seed=5, size=32, rank=0, world=2))[0]
    r1 = next(shape_batches(8, seed=5, size=32, rank=1, world=2))[0]
    assert torch.equal(r0, a[:8]) and not torch.equal(r0, r1)


def test_ddp_two_cpu_processes_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out, report = tmp_path / "net.pt", tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "edgekit.models.ofa.train", "--space", "ofa-mbv3-tiny", "--steps", "1,1,1,2",
        "--batch-size", "8", "--device", "cpu", "--eval-images", "40", "--calib-images", "16",
        "--eval-subnets", "1", "--log-every", "1", "--out", str(out), "--report", str(report),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["world_size"] == 2 and data["device"] == "cpu"
    sums = data["replica_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # DDP kept both replicas identical
    assert [h["phase"] for h in data["history"]][:2] == ["full", "kernel"]
    assert set(data["accuracy"]) == {"largest", "smallest", "sample0"}
    net = build_supernet("ofa-mbv3-tiny", checkpoint=out)
    assert net.space.name == "ofa-mbv3-tiny"
