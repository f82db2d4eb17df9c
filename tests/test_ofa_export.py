"""edgekit export --model ofa-mbv3: a released-layout checkpoint + a subnet JSON -> a bundle whose ONNX
output equals the `ofa` package's own subnet (get_active_subnet) on the same input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from edgekit.cli import main
from edgekit.models.ofa import get_space, sample
from tests.test_ofa_checkpoint import _reference, needs_ofa


@needs_ofa
def test_exported_subnet_matches_the_reference_package(tmp_path, capsys):
    import edgekit.runtimes as rt

    reference = _reference(1.0, seed=5)
    checkpoint = tmp_path / "ofa_state.pth"
    torch.save({"state_dict": reference.state_dict()}, checkpoint)
    space = get_space("ofa-mbv3-w1.0")
    config = sample(space, random.Random(11)).replace(r=128)
    out = tmp_path / "bundle"
    code = main(["export", "--model", "ofa-mbv3", "--checkpoint", str(checkpoint), "--subnet", config.to_json(),
                 "--target", "host", "--out", str(out), "--bench-runs", "0", "--json"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    assert manifest["extra"]["space"] == "ofa-mbv3-w1.0"
    assert manifest["extra"]["subnet"] == config.to_dict()
    assert manifest["extra"]["macs"] > 0 and manifest["extra"]["params"] > 0
    assert len(manifest["extra"]["checkpoint_sha256"]) == 64
    assert manifest["extra"]["bn_recalibration"].startswith("none")

    reference.set_active_subnet(ks=list(config.ks), e=list(config.e), d=list(config.d))
    subnet = reference.get_active_subnet(preserve_weight=True).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        expected = subnet(torch.from_numpy(x)).numpy()
    got = rt.load(out).run(x)[manifest["graphs"]["model"]["outputs"][0]["name"]]
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("subnet, message", [
    ({"ks": [3] * 19, "e": [3] * 20, "d": [2] * 5, "r": 224}, "'ks'"),
    ({"ks": [3] * 20, "e": [5] * 20, "d": [2] * 5, "r": 224}, "'e'"),
    ({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 100}, "'r'"),
])
def test_subnet_errors_name_field_and_choices(subnet, message):
    from edgekit.models.ofa import SubnetConfig, SubnetConfigError

    with pytest.raises(SubnetConfigError, match=message):
        SubnetConfig.from_dict(subnet, get_space("ofa-mbv3-w1.0"))


def test_ofa_calibration_images_of_the_wrong_shape(tmp_path):
    from edgekit.models.registry import ModelRequest, resolve_model
    from edgekit.runtimes.errors import UsageError

    np.save(tmp_path / "calib.npy", np.zeros((4, 3, 32, 32), np.float32))
    subnet = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 48})
    with pytest.raises(UsageError, match=r"--bn-data \S+: expected samples shaped \(N, 3, 48, 48\) for input 'image', got \(4, 3, 32, 32\)"):
        resolve_model(ModelRequest("ofa-mbv3", subnet=subnet, bn_data=tmp_path / "calib.npy"))
