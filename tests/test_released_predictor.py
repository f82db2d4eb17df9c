"""once-for-all's released accuracy predictor: cross-check against the `ofa` package, refusals, the cache,
`select --checkpoint --accuracy` end to end, and user-built predictors kept out of the package."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.cli import main
from edgekit.models.ofa import get_space
from edgekit.models.ofa.predictor import check_user_out, default_predictor_path, load_predictor, user_predictor_path
from edgekit.models.ofa.released_predictor import SOURCE, cache_path, load_released
from edgekit.runtimes.bundle import sha256_file
from edgekit.runtimes.errors import ModelLoadError, UsageError

ROOT = Path(__file__).resolve().parents[1]
W10 = get_space("ofa-mbv3-w1.0")


def _ofa_predictor_class():
    try:
        import ofa  # noqa: F401
    except ImportError:
        return None
    sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder

    return AccuracyPredictor, MobileNetArchEncoder


OFA = _ofa_predictor_class()
needs_ofa = pytest.mark.skipif(OFA is None, reason="the `ofa` package is not installed (pip install ofa)")


@pytest.fixture(autouse=True)
def _user_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEKIT_DATA_DIR", str(tmp_path / "data"))


def _reference(seed: int = 0):
    """ofa's AccuracyPredictor for the w1.0 space (its encoder over 128..224 px), seeded random init."""
    predictor_class, encoder_class = OFA
    torch.manual_seed(seed)
    encoder = encoder_class(image_size_list=list(W10.resolutions), ks_list=[3, 5, 7], expand_list=[3, 4, 6],
                            depth_list=[2, 3, 4], n_stage=5)
    net = predictor_class(encoder, device="cpu")
    with torch.no_grad():
        net.base_acc.fill_(0.75)
    return net.eval()


@pytest.fixture
def released(tmp_path):
    """(ofa's predictor, its state dict saved as once-for-all releases it)."""
    if OFA is None:
        pytest.skip("the `ofa` package is not installed")
    net = _reference()
    path = tmp_path / "ofa_acc_predictor.pth"
    torch.save(net.state_dict(), path)
    return net, path


def _arch(config) -> dict:
    return {**W10.config_dict(config), "image_size": config.r}


@needs_ofa
def test_predictions_match_ofa_predict_acc_on_random_configs(released):
    net, path = released
    ours = load_released(path, W10)
    rng = random.Random(0)
    configs = [W10.sample(rng) for _ in range(200)] + [W10.smallest()]
    with torch.no_grad():
        want = net.predict_acc([_arch(c) for c in configs]).numpy()
    got = ours.predict(configs)
    assert np.abs(got - want).max() <= 1e-5
    assert np.ptp(want) > 0.01  # the configs do differ in predicted accuracy


@needs_ofa
def test_converted_once_then_read_without_torch(released, tmp_path):
    _, path = released
    load_released(path, W10)
    cached = cache_path(sha256_file(path))
    assert cached.is_file() and cached.parent == tmp_path / "cache" / "predictors"
    code = ("import sys, random; from edgekit.models.ofa import get_space; "
            "from edgekit.models.ofa.released_predictor import load_released; s = get_space('ofa-mbv3-w1.0'); "
            f"p = load_released({str(path)!r}, s); p.predict([s.sample(random.Random(0))]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@needs_ofa
def test_released_predictor_knows_fp32_only_for_w10(released):
    _, path = released
    predictor = W10.accuracy_model(path)
    assert predictor.precisions == ("fp32",) and predictor.source == SOURCE
    with pytest.raises(UsageError, match=r"no measured effect for precision 'int8'; it knows \[.fp32.\]"):
        predictor.predict([W10.smallest()], "int8")


def _save(tmp_path: Path, state, name: str = "other.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda: {"layers.0.0.weight": torch.zeros(8, 128), "layers.0.0.bias": torch.zeros(8),
              "layers.1.weight": torch.zeros(1, 8), "base_acc": torch.zeros(1)},
     "layers.0.0.weight has shape (8, 128), ofa-mbv3-w1.0 needs (8, 145): an accuracy predictor of another space"),
    (lambda: {"0.weight": torch.zeros(400, 128), "0.bias": torch.zeros(400)},
     "not a once-for-all AccuracyPredictor state dict: no layers.0.0.weight (keys: 0.bias, 0.weight)"),
    (lambda: {"layers.0.0.weight": torch.zeros(8, 145), "layers.0.0.bias": torch.zeros(8), "base_acc": torch.zeros(1)},
     "not a once-for-all AccuracyPredictor state dict: key layers.1.weight missing"),
    (lambda: {"layers.0.0.weight": torch.zeros(8, 145), "layers.0.0.bias": torch.zeros(8),
              "layers.1.weight": torch.zeros(2, 8), "base_acc": torch.zeros(1)},
     "layers.1.weight has shape (2, 8), ofa-mbv3-w1.0 needs (1, 8): not a once-for-all AccuracyPredictor"),
    (lambda: torch.zeros(3), "holds a Tensor, not a state dict of tensors"),
])
def test_files_that_are_not_the_w10_predictor_are_refused_and_nothing_cached(tmp_path, make, message):
    path = _save(tmp_path, make())
    with pytest.raises(ModelLoadError) as info:
        load_released(path, W10)
    assert str(info.value) == f"{path}: {message}"
    assert not (tmp_path / "cache").exists()


@needs_ofa
def test_the_w10_predictor_on_another_space_is_refused(released):
    _, path = released
    with pytest.raises(ModelLoadError, match="ofa-mbv3-shapes needs .*: an accuracy predictor of another space"):
        load_released(path, get_space("ofa-mbv3-shapes"))


def test_pickles_and_oversized_files_are_refused(tmp_path, monkeypatch):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(ModelLoadError, match="cannot be read by torch.load"):
        load_released(path, W10)
    monkeypatch.setattr("edgekit.models.ofa.released_predictor.MAX_BYTES", 16)
    with pytest.raises(ModelLoadError, match="MiB an accuracy predictor checkpoint may be"):
        load_released(path, W10)


@pytest.fixture
def w10_checkpoint(tmp_path):
    """A released-layout w1.0 supernet with random weights (tests/test_ofa_checkpoint.py's helper)."""
    from tests.test_ofa_checkpoint import OFAMobileNetV3
    from tests.test_ofa_checkpoint import _reference as supernet

    if OFAMobileNetV3 is None:
        pytest.skip("the `ofa` package is not installed")
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": supernet(1.0, seed=3).state_dict()}, path)
    return path


def test_select_with_a_w10_checkpoint_and_the_released_predictor(released, w10_checkpoint, capsys):
    net, predictor = released
    code = main(["select", "--model", "ofa-mbv3", "--checkpoint", str(w10_checkpoint), "--accuracy", str(predictor),
                 "--target", "rpi5", "--budget-ms", "30", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    best = data["best"]
    assert data["space"] == "ofa-mbv3-w1.0" and best["accuracy_source"] == SOURCE
    assert best["latency_ms"] * (1 + data["margin"]) <= 30 and best["precision"] == "fp32"
    assert best["config"]["r"] in W10.resolutions and len(best["config"]["ks"]) == W10.num_blocks
    assert {c["precision"] for c in data["pareto"]} == {"fp32"}
    assert any("int8" in s and "not measured" in s for s in data["skipped_options"])
    with torch.no_grad():
        want = float(net.predict_acc([{**best["config"], "image_size": best["config"]["r"]}]))
    assert abs(best["accuracy"] - want) < 1e-4  # the JSON rounds to 4 digits


@pytest.mark.parametrize("args, message", [
    (["--accuracy", "p.npz"], "--accuracy p.npz: expected once-for-all's released predictor, a .pth file"),
    (["--accuracy", "p.pth", "--accuracy-predictor", "stem"], "pass --accuracy (once-for-all's .pth) or"),
    (["--accuracy", "missing.pth"], "--accuracy missing.pth: no such file"),
    (["--model", "slm-encdec", "--checkpoint", "w.pt"], "--checkpoint takes once-for-all supernet weights"),
])
def test_select_refuses_bad_accuracy_options_in_one_line(capsys, args, message):
    code = main(["select", "--target", "rpi5", "--budget-ms", "30", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_the_released_predictor_does_not_fit_the_shipped_space(released, capsys):
    _, predictor = released
    code = main(["select", "--target", "rpi5", "--budget-ms", "30", "--accuracy", str(predictor)])
    assert code != 0 and "an accuracy predictor of another space" in capsys.readouterr().err


def test_user_builds_never_write_into_the_package(tmp_path):
    from edgekit.tools import accuracy_data

    with pytest.raises(UsageError, match="inside the installed edgekit package"):
        check_user_out(default_predictor_path("ofa-mbv3-shapes"))
    assert check_user_out(tmp_path / "p") == (tmp_path / "p").resolve()
    with pytest.raises(SystemExit) as info:
        accuracy_data.main(["--space", "ofa-mbv3-tiny", "--out", str(default_predictor_path("ofa-mbv3-tiny"))])
    assert info.value.code == 2
    assert user_predictor_path("ofa-mbv3-tiny") == tmp_path / "data" / "predictors" / "ofa_mbv3_tiny_accuracy"


def test_a_user_built_predictor_is_found_in_the_user_data_dir(tmp_path):
    from edgekit.models.ofa import AccuracyPredictor

    space = get_space("ofa-mbv3-tiny")
    with pytest.raises(UsageError, match="writes .*predictors/ofa_mbv3_tiny_accuracy"):
        load_predictor(space)
    rng = random.Random(0)
    configs = [space.sample(rng) for _ in range(20)]
    predictor, _ = AccuracyPredictor.fit(space, configs, [0.5 + 0.01 * sum(c.d) for c in configs], epochs=5)
    target = user_predictor_path(space.name)
    target.parent.mkdir(parents=True)
    predictor.save(target)
    assert load_predictor(space).hidden == predictor.hidden
