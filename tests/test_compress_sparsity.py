"""Sparsity masks, the cubic schedule, mask-keeping fine-tuning and the TensorRT kit's sparse flag."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekit.compress.finetune import FinetuneConfig, finetune, gradual_masks
from edgekit.compress.schedule import cubic_sparsity
from edgekit.compress.sparsity import (apply_masks, check_ratio, count_nonzero, magnitude_masks, mask_sparsity,
                                       nm_masks, parse_pattern)
from edgekit.runtimes.errors import UsageError
from tests.test_compress_prune import SIZE, tiny_seg


def test_cubic_schedule_values():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i=0.1, s_f=0.9, t0=10, n=4, dt=5 (ends at t=30)
    at = lambda t: cubic_sparsity(t, initial=0.1, final=0.9, start=10, steps=4, every=5)  # noqa: E731
    assert at(0) == 0.1 and at(10) == 0.1
    assert at(20) == pytest.approx(0.9 - 0.8 * 0.5 ** 3) == pytest.approx(0.8)
    assert at(15) == pytest.approx(0.9 - 0.8 * 0.75 ** 3)
    assert at(30) == pytest.approx(0.9) and at(100) == pytest.approx(0.9)


def _groups(weight: torch.Tensor, m: int) -> torch.Tensor:
    """Non-zeros per group of m consecutive input weights (input axis 1)."""
    return (weight.movedim(1, -1).reshape(-1, m) != 0).sum(-1)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8)])
def test_nm_masks_keep_exactly_n_per_group_through_finetuning(n, m):
    torch.manual_seed(0)
    model = tiny_seg()
    teacher = tiny_seg()
    masks = nm_masks(model, n, m)
    assert "stem.0.weight" not in masks  # 3 input channels: left dense
    assert "block.1.weight" in masks and "classifier.weight" in masks
    images, labels = torch.randn(16, 3, SIZE, SIZE), torch.randint(0, 4, (16, SIZE, SIZE))
    finetune(model, teacher, images, labels, FinetuneConfig(steps=3, batch=4), masks)
    params = dict(model.named_parameters())
    for name in masks:
        assert (_groups(params[name].detach(), m) == n).all(), name  # trained weights are never exactly 0
    assert mask_sparsity(masks) == pytest.approx(1 - n / m)


def test_nm_groups_run_along_the_input_dimension():
    linear = nn.Linear(8, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.arange(24, dtype=torch.float32).reshape(3, 8))
    apply_masks(linear, nm_masks(linear, 2, 4))
    assert linear.weight[0].tolist() == [0, 0, 2, 3, 0, 0, 6, 7]


def test_gradual_magnitude_reaches_the_target():
    torch.manual_seed(0)
    model, teacher = tiny_seg(), tiny_seg()
    images, labels = torch.randn(16, 3, SIZE, SIZE), torch.randint(0, 4, (16, SIZE, SIZE))
    plan = gradual_masks(0.8, 8)
    assert mask_sparsity(plan(model, 0)) == 0.0 and 0.0 < mask_sparsity(plan(model, 3)) < 0.8
    dense_nonzero = count_nonzero(model)
    finetune(model, teacher, images, labels, FinetuneConfig(steps=8, batch=4), plan)
    weights = [p for name, p in model.named_parameters() if name in magnitude_masks(model, 0.0)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.8, abs=0.005)
    assert count_nonzero(model) < 0.3 * dense_nonzero


@pytest.mark.parametrize("text", ["4:4", "2:1", "0:4", "2-4", "a:b", ""])
def test_bad_patterns(text):
    with pytest.raises(UsageError, match="expected N:M with 0 < N < M"):
        parse_pattern(text)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.5, 1.5])
def test_bad_ratios(value):
    with pytest.raises(UsageError, match="strictly between 0 and 1"):
        check_ratio(value, "--magnitude")


def test_tensorrt_kit_reads_the_compression_record(tmp_path):
    from edgekit.exporters.tensorrt import write_tensorrt_kit
    from edgekit.runtimes.spec import TensorSpec
    from edgekit.targets import load_target

    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)).eval()  # dense weights: the check of the file says no
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(1, 8, 8, 8),), str(path), input_names=["input"], output_names=["output"],
                      dynamo=False)
    inputs = (TensorSpec("input", (1, 8, 8, 8)),)
    plain = write_tensorrt_kit(path, tmp_path, load_target("jetson"), "int8", inputs, {})
    declared = write_tensorrt_kit(path, tmp_path, load_target("jetson"), "int8", inputs, {},
                                  compression={"sparsity": "2:4"})
    assert not plain["sparsity"] and "--sparsity=enable" not in plain["trtexec_flags"]["10"]
    assert declared["sparsity"] and "--sparsity=enable" in declared["trtexec_flags"]["10"]
    assert "--sparsity=enable" in (tmp_path / "build_engine.sh").read_text()
