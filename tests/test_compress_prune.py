"""Structured pruning (edgekit.compress.prune / allocation / checkpoint / segformer) on tiny models at 32x32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekit.compress.allocation import allocate_and_prune, rank_weights
from edgekit.compress.checkpoint import load_pruned, save_pruned
from edgekit.compress.prune import count_macs, group_roots, prune_to_macs, prune_with_rates
from edgekit.runtimes.errors import UsageError

SIZE = 32


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinySeg(nn.Module):
    """A small encoder-decoder segmenter with a residual block: coupled channels for the DependencyGraph."""

    def __init__(self, classes: int = 4, width: int = 32) -> None:
        super().__init__()
        self.stem = conv_bn(3, width)
        self.down = conv_bn(width, 2 * width, 2)
        self.block = nn.Sequential(conv_bn(2 * width, 2 * width), nn.Conv2d(2 * width, 2 * width, 3, 1, 1))
        self.fuse = conv_bn(2 * width, width)
        self.classifier = nn.Conv2d(width, classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.down(self.stem(image))
        x = torch.relu(x + self.block(x))
        x = nn.functional.interpolate(self.fuse(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(x)


def tiny_seg(seed: int = 0) -> TinySeg:
    torch.manual_seed(seed)
    return TinySeg().eval()


EXAMPLE = torch.zeros(1, 3, SIZE, SIZE)


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_macs_target_reached_within_two_points(ratio):
    model = tiny_seg()
    result = prune_to_macs(model, EXAMPLE, ratio)
    macs, params = count_macs(result.model, EXAMPLE)
    assert abs((1 - macs / count_macs(model, EXAMPLE)[0]) - ratio) <= 0.02
    assert abs(result.removed - ratio) <= 0.02 and params < result.params_before
    assert result.model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 4, SIZE, SIZE)  # classes kept
    assert result.model.classifier.out_channels == 4 and model.stem[0].out_channels == 32  # the input is untouched


def test_sensitivity_allocation_differs_from_uniform_at_the_same_macs():
    model = tiny_seg()
    images = torch.randn(8, 3, SIZE, SIZE)
    uniform, none = allocate_and_prune(model, EXAMPLE, 0.5, "uniform")
    sensitive, measured = allocate_and_prune(model, EXAMPLE, 0.5, "sensitivity", images=images)
    assert none is None and set(measured) == set(sensitive.rates)
    assert abs(sensitive.removed - 0.5) <= 0.02 and abs(uniform.removed - 0.5) <= 0.02
    assert len(set(uniform.rates.values())) == 1 and len(set(sensitive.rates.values())) > 1
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert widths(uniform.model) != widths(sensitive.model)
    least = min(measured, key=measured.get)
    most = max(measured, key=measured.get)
    assert sensitive.rates[least] > sensitive.rates[most]  # the least sensitive group loses the most channels
    assert rank_weights({"a": 0.0, "b": 1.0}) == {"a": 1.5, "b": 0.5}


def test_pruned_checkpoint_reloads_with_equal_outputs(tmp_path):
    pruned = prune_to_macs(tiny_seg(), EXAMPLE, 0.5).model
    path = tmp_path / "pruned.pt"
    save_pruned(pruned, path)
    fresh = tiny_seg(seed=1)  # a freshly built dense model, other weights
    with pytest.raises(RuntimeError):  # measured with torch-pruning 1.6.1: the plain state_dict does not load
        fresh.load_state_dict(pruned.state_dict())
    reloaded = load_pruned(tiny_seg(seed=1), path)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(reloaded(x), pruned(x))
    torch.load(path, weights_only=True)  # no pickled code in the file


def test_a_file_that_is_not_a_pruned_checkpoint_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny_seg().state_dict(), path)
    with pytest.raises(UsageError, match="not a torch-pruning state dict"):
        load_pruned(tiny_seg(), path)


def test_ignoring_every_layer_is_refused_not_silently_a_no_op():
    model = tiny_seg()
    everything = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with pytest.raises(UsageError, match="no prunable channel group"):
        group_roots(model, EXAMPLE, everything)


class FixedScale(nn.Module):
    """A layer torch-pruning cannot follow: a per-channel scale stored as a plain tensor of fixed size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_a_layer_pruning_cannot_follow_is_named():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), FixedScale(16), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()
    with pytest.raises(UsageError, match=r"layer '1' \(FixedScale\)"):
        prune_with_rates(model, EXAMPLE, {"0": 0.5})


def test_segformer_heads_and_mlp_widths_pruned_and_exported(tmp_path):
    transformers = pytest.importorskip("transformers")
    from edgekit.compress.segformer import prune_segformer, segformer_macs
    from edgekit.exporters.base import ExportGraph
    from edgekit.models.source import ModelRequest, ModelSource
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle
    from edgekit.runtimes.spec import TensorSpec
    import edgekit.runtimes as rt

    config = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[2, 4], mlp_ratios=[4, 4], decoder_hidden_size=32, num_labels=4)
    torch.manual_seed(0)
    dense = transformers.SegformerForSemanticSegmentation(config).eval()
    pruned = prune_segformer(dense, 0.5, size=SIZE)
    (macs0, params0), (macs, params) = segformer_macs(dense, SIZE), segformer_macs(pruned, SIZE)
    assert macs < macs0 and params < params0
    assert pruned.model.config.num_attention_heads == [1, 2] and pruned.model.config.mlp_ratios == [2, 2]
    assert dense.config.num_attention_heads == [2, 4]  # the input model is untouched
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = pruned(x)
    assert logits.shape == (2, 4, SIZE // 4, SIZE // 4)
    graph = ExportGraph("model", pruned, (TensorSpec("image", ("batch", 3, SIZE, SIZE)),), (x[:1],), ("logits",))
    out = tmp_path / "segformer"
    export_bundle(ExportRequest(out=out, model=ModelRequest("pruned_segformer.py:build"), measure=MeasureConfig(runs=2),
                                source=ModelSource("segformer-pruned", {"model": graph})))
    result = rt.load(out).run({"image": x.numpy()})
    assert torch.allclose(torch.from_numpy(result["logits"]), logits, atol=1e-4)


class Untraceable(nn.Module):
    """A layer whose forward leaves autograd (numpy), which torch-pruning's tracing cannot follow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("cannot trace through numpy")
        return x


def test_a_layer_torch_pruning_cannot_trace_is_named():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), Untraceable(), nn.Conv2d(16, 4, 1)).eval()
    with pytest.raises(UsageError, match=r"torch-pruning cannot trace the model: layer '1' \(Untraceable\) failed: "
                                         "cannot trace through numpy"):
        prune_to_macs(model, EXAMPLE, 0.5)


def test_segformer_inside_the_hf_seg_adapter_keeps_its_wrapper():
    transformers = pytest.importorskip("transformers")
    adapter_module = pytest.importorskip("edgekit.models.seg.hf")
    from edgekit.compress.segformer import prune_segformer, segformer_macs

    config = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[2, 4], mlp_ratios=[4, 4], decoder_hidden_size=32, num_labels=4)
    torch.manual_seed(0)
    adapter = adapter_module.SegformerAdapter(transformers.SegformerForSemanticSegmentation(config)).eval()
    pruned = prune_segformer(adapter, 0.5, size=SIZE)
    assert type(pruned) is type(adapter) and pruned.model.config.num_attention_heads == [1, 2]
    assert segformer_macs(pruned, SIZE)[0] < segformer_macs(adapter, SIZE)[0]
    with torch.no_grad():
        assert pruned(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 4, SIZE, SIZE)


def test_segformer_pruned_to_a_macs_target_by_heads_and_widths():
    transformers = pytest.importorskip("transformers")
    from edgekit.compress.segformer import SegformerLogits, is_segformer, prune_segformer_to_macs

    config = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[32, 64], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[2, 4], mlp_ratios=[4, 4], decoder_hidden_size=64, num_labels=4)
    torch.manual_seed(0)
    dense = SegformerLogits(transformers.SegformerForSemanticSegmentation(config)).eval()
    assert is_segformer(dense) and is_segformer(dense.model) and not is_segformer(tiny_seg())
    result = prune_segformer_to_macs(dense, torch.zeros(1, 3, 64, 64), 0.3)
    assert abs(result.removed - 0.3) <= 0.02 and result.params_after < result.params_before
    with torch.no_grad():
        assert result.model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 16, 16)
