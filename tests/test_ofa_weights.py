"""The shipped trained supernet (ofa-mbv3-shapes): metadata, loading, and held-out accuracy."""

from __future__ import annotations

import hashlib
import json

import torch

from edgekit.models.ofa import (
    GENERATOR_VERSION,
    SubnetConfig,
    build_supernet,
    default_checkpoint,
    largest,
    make_shapes,
    smallest,
)
from edgekit.models.ofa.data import CALIBRATION_SEED, HELDOUT_SEED
from edgekit.models.ofa.train import evaluate_subnet

torch.set_num_threads(1)


def test_metadata_describes_the_shipped_file():
    path = default_checkpoint("ofa-mbv3-shapes")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["space"] == "ofa-mbv3-shapes" and meta["seed"] == 0
    assert meta["data_generator"]["version"] == GENERATOR_VERSION
    assert path.stat().st_size < 5_000_000
    acc = meta["accuracy"]
    assert acc["largest"]["top1"] > acc["smallest"]["top1"]
    raw = torch.load(path, weights_only=True)
    assert raw["space"] == "ofa-mbv3-shapes"
    assert {t.dtype for t in raw["state_dict"].values() if t.is_floating_point()} == {torch.float16}


def test_shipped_supernet_is_accurate_on_held_out_images():
    net = build_supernet("ofa-mbv3-shapes", checkpoint="default")
    images, labels = make_shapes(512, seed=HELDOUT_SEED, size=64)
    calib, _ = make_shapes(256, seed=CALIBRATION_SEED, size=64)
    space = net.space
    meta = json.loads(default_checkpoint(space.name).with_suffix(".json").read_text())
    top_large = evaluate_subnet(net, largest(space), images, labels, calib)
    top_small = evaluate_subnet(net, smallest(space), images, labels, calib)
    middle = SubnetConfig.from_dict(meta["accuracy"]["sample2"]["config"], space)
    top_mid = evaluate_subnet(net, middle, images, labels, calib)
    assert top_large >= 0.96, top_large  # 0.990 on 5000 images
    assert top_small >= 0.78, top_small  # 0.849 on 5000 images
    assert top_mid >= 0.85, top_mid  # 0.915 on 5000 images
    assert top_large > top_mid > top_small
