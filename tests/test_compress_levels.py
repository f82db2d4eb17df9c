"""Channel rounding for speed and the shipped compression levels (train_levels.py -> compress / select)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("torch_pruning")

from edgekit.compress import levels  # noqa: E402
from edgekit.compress.allocation import DEFAULT_ALLOCATION  # noqa: E402
from edgekit.compress.prune import _rounded_rate, prune_to_macs  # noqa: E402
from edgekit.compress.run import SPEED_ROUND_TO, CompressRequest, compress  # noqa: E402
from edgekit.compress.train_levels import main as train_levels, prune_level  # noqa: E402
from edgekit.models.seg import source as seg_source  # noqa: E402
from edgekit.models.seg.source import load_builtin  # noqa: E402

EXAMPLE = torch.zeros(1, 3, 64, 64)


def _widths(model) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_rounded_rate_keeps_the_nearest_multiple_and_at_least_ten_percent():
    assert int(64 * (1 - _rounded_rate(64, 0.3, 8))) == 48  # 44.8 kept -> 48 (torch-pruning keeps int(...))
    assert int(128 * (1 - _rounded_rate(128, 0.95, 8))) == 16  # the 90% cap: 12.8 -> 16, never 8
    assert _rounded_rate(30, 0.5, 8) == 0.5  # not a multiple: left to torch-pruning


@pytest.mark.parametrize("allocation", ["uniform", "sensitivity"])
def test_rounded_pruning_reaches_the_target_in_multiples_of_8(allocation):
    dense, _ = load_builtin("seg-simple")
    result, _ = prune_level(dense.float(), EXAMPLE, 0.5, allocation, 8)
    # regression: sensitivity rates with torch-pruning's round_to skipped groups whose rounded count was 0, the
    # bisection missed the target and the result silently fell back to unrounded channels (round_to None)
    assert result.round_to == 8
    assert abs(result.removed - 0.5) <= 0.02
    widths = _widths(result.model)[:-1]  # the classifier outputs the classes
    assert all(w % 8 == 0 for w in widths), widths
    # regression: the 16-channel stage was cut to 8 (a 7-point mIoU loss); groups of <= 2 multiples stay whole
    assert _widths(result.model)[1:4] == [16, 16, 16]


def test_unreachable_rounding_falls_back_to_exact_channels():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1))
    result = prune_to_macs(net, torch.zeros(1, 3, 8, 8), 0.5, round_to=8)  # the only group has 2 multiples
    assert result.round_to is None and abs(result.removed - 0.5) <= 0.02


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    """The shipped dense weights in a scratch folder with a 2-step level trained beside them."""
    for name in ("seg_simple.pt", "seg_simple.json"):
        shutil.copy(seg_source.WEIGHTS / name, tmp_path / name)
    monkeypatch.setattr(seg_source, "WEIGHTS", tmp_path)
    assert train_levels(["--levels", "0.5", "--steps", "2", "--batch", "4", "--train-scenes", "8", "--val-scenes", "4",
                         "--device", "cpu", "--allocation", DEFAULT_ALLOCATION,
                         "--round-to", str(SPEED_ROUND_TO or 0), "--out", str(tmp_path), "--quiet"]) == 0
    return tmp_path


def test_a_level_matches_only_its_own_settings_and_dense_weights(weights_dir):
    record = levels.find_level("seg-simple", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO)
    assert record is not None and record["file"] == "seg_simple_p50.pt"
    other = "sensitivity" if DEFAULT_ALLOCATION == "uniform" else "uniform"
    assert levels.find_level("seg-simple", 0.5, other, SPEED_ROUND_TO) is None
    assert levels.find_level("seg-simple", 0.3, DEFAULT_ALLOCATION, SPEED_ROUND_TO) is None
    assert levels.find_level("seg-vwformer", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO) is None
    model, _ = levels.shipped_level("seg-simple", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO)
    assert _widths(model) == record["widths"] and next(model.parameters()).dtype == torch.float32
    state = torch.load(weights_dir / "seg_simple.pt", weights_only=True)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, weights_dir / "seg_simple.pt")  # other dense weights: the level no longer applies
    assert levels.find_level("seg-simple", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO) is None


def test_compress_starts_from_a_matching_level_and_records_it(weights_dir, tmp_path):
    record = json.loads((weights_dir / "seg_simple_p50.json").read_text())
    out = tmp_path / "bundle"
    report = compress(CompressRequest(out=out, prune=0.5, runs=2, allow_drop=True))
    assert [row.step for row in report.steps] == ["dense", "pruned + fine-tuned (shipped level)"]  # no host fine-tuning
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["compression"]["shipped_level"]["file"] == "seg_simple_p50.pt"
    assert manifest["extra"]["compression"]["macs_removed"] == pytest.approx(record["macs_removed"])
    again = compress(CompressRequest(out=tmp_path / "b2", prune=0.5, runs=2, allow_drop=True, from_dense=True,
                                     finetune_steps=0))
    assert [row.step for row in again.steps] == ["dense", "pruned"]


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_shipped_levels_match_the_defaults_and_keep_the_accuracy(ratio):
    from edgekit.compress.data import family_scenes
    from edgekit.models.seg.metrics import confusion_matrix, score_confusion

    found = levels.shipped_level("seg-simple", ratio, DEFAULT_ALLOCATION, SPEED_ROUND_TO)
    assert found is not None, "the shipped level must match compress's defaults (else compress prunes on the host)"
    model, record = found
    val = family_scenes(64, 64, "val")

    def miou(net) -> float:
        with torch.no_grad():
            pred = net(torch.from_numpy(val.images)).argmax(1).numpy()
        return score_confusion(confusion_matrix(pred, val.labels, 8), len(val)).miou

    dense, _ = load_builtin("seg-simple")
    assert abs(record["macs_removed"] - ratio) <= 0.02 and all(w % 8 == 0 for w in record["widths"][:-1])
    assert miou(model) >= miou(dense.float()) - 0.01  # within a point of dense on these scenes (50%: +0.2 measured)


def test_measured_select_takes_the_shipped_level_and_names_its_bundles_by_it():
    from edgekit.measured_select import MeasuredRequest, _level_key, _pruned
    from edgekit.models.registry import ModelRequest, resolve_model

    source = resolve_model(ModelRequest("seg-simple"))
    record = levels.find_level("seg-simple", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO)
    pruned = _pruned(source, 0.5, 300, "seg-simple")  # no host fine-tuning: the level is used as shipped
    assert _widths(pruned.graph.module) == record["widths"]
    shipped_weights = levels.shipped_level("seg-simple", 0.5, DEFAULT_ALLOCATION, SPEED_ROUND_TO)[0].state_dict()
    assert all(torch.equal(v, shipped_weights[k]) for k, v in pruned.graph.module.state_dict().items())
    request = MeasuredRequest(model=ModelRequest("seg-simple"), eval_data=None, metric=None, target="host", budget_ms=1.0)
    assert _level_key(request, source, 0.5).startswith("-shipped")
    assert _level_key(request, source, 0.7) == "-ft300"  # no 70% level is shipped


def test_the_cli_help_names_the_default_allocation():
    import inspect

    from edgekit.cli.compress import compress_command

    help_text = inspect.signature(compress_command).parameters["allocation"].default.help
    assert f"default: {DEFAULT_ALLOCATION}" in help_text
