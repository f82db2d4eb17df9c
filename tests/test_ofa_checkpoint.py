"""Checkpoint import: once-for-all's layout cross-checked against the `ofa` package, refusals, pickles."""

from __future__ import annotations

import random
import sys
import types

import pytest
import torch

from edgekit.models.ofa import (
    CheckpointError,
    build_supernet,
    get_space,
    load_checkpoint,
    materialize,
    randomize_weights,
    sample,
    save_checkpoint,
)
from edgekit.models.ofa.checkpoint import ofa_key_map
from edgekit.runtimes.errors import ModelLoadError

torch.set_num_threads(1)


def _import_ofa():
    """OFAMobileNetV3 from the `ofa` package (its dataloader module needs torchvision: stubbed)."""
    try:
        import ofa  # noqa: F401
    except ImportError:
        return None
    sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3


OFAMobileNetV3 = _import_ofa()
needs_ofa = pytest.mark.skipif(OFAMobileNetV3 is None, reason="the `ofa` package is not installed (pip install ofa)")


def _reference(width: float, seed: int):
    net = OFAMobileNetV3(
        n_classes=1000, dropout_rate=0.0, width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    return randomize_weights(net, seed=seed).eval()


@pytest.fixture(scope="module")
def ofa_w10(tmp_path_factory):
    net = _reference(1.0, seed=3)
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": net.state_dict()}, path)  # the released files' layout
    return net, path


@needs_ofa
def test_key_map_matches_once_for_all_keys(ofa_w10):
    net, _ = ofa_w10
    keys = set(net.state_dict())
    assert len(keys) == 475
    assert keys == set(ofa_key_map(get_space("ofa-mbv3-w1.0")))
    assert "blocks.2.conv.depth_conv.conv.5to3_matrix" in keys


@needs_ofa
def test_imported_subnets_match_ofa_get_active_subnet(ofa_w10):
    ref, path = ofa_w10
    net = build_supernet("ofa-mbv3-w1.0", checkpoint=path)
    space = net.space
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    configs = [sample(space, rng).replace(r=128) for _ in range(20)]
    for cfg in configs:
        ref.set_active_subnet(ks=list(cfg.ks), e=list(cfg.e), d=list(cfg.d))
        ref_sub = ref.get_active_subnet(preserve_weight=True).eval()
        x = torch.randn(1, 3, cfg.r, cfg.r, generator=gen)
        with torch.no_grad():
            want = ref_sub(x)
            got = materialize(net, cfg)(x)
            got_super = net(x, cfg)
        assert want.std() > 1e-2  # random weights: the output depends on the input
        worst = max(worst, (want - got).abs().max().item(), (want - got_super).abs().max().item())
    assert worst <= 1e-5, worst


@needs_ofa
def test_other_width_refused_with_shapes_named(tmp_path):
    ref = _reference(1.2, seed=4)
    path = tmp_path / "w12.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"does not fit space 'ofa-mbv3-w1.0'.*wrong shape.*first_conv.conv.weight \(24, 3, 3, 3\) vs \(16, 3, 3, 3\).*more\)") as info:
        build_supernet("ofa-mbv3-w1.0", checkpoint=path)
    assert "\n" not in str(info.value)
    build_supernet("ofa-mbv3-w1.2", checkpoint=path)  # the right space takes it


def test_other_family_refused_with_keys_named(tmp_path):
    path = tmp_path / "resnet.pth"
    state = {f"layer{i}.0.conv1.weight": torch.zeros(4, 4, 3, 3) for i in range(8)}
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        build_supernet("ofa-mbv3-w1.0", checkpoint=path)
    message = str(info.value)
    assert "(once-for-all layout) does not fit space 'ofa-mbv3-w1.0'" in message
    assert "411 missing: first_conv.conv.weight" in message  # 475 less 64 optional BN counters
    assert "8 unexpected: layer0.0.conv1.weight" in message and "(3 more)" in message


def test_code_execution_pickle_fails_clearly(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "cfg": _Custom()}, path)
    with pytest.raises(CheckpointError, match=r"needs code execution to unpickle \(object .*_Custom\), which torch.load\(weights_only=True\) refuses") as info:
        build_supernet("ofa-mbv3-shapes", checkpoint=path)
    assert isinstance(info.value, ModelLoadError)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_supernet("ofa-mbv3-shapes", checkpoint=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        build_supernet("ofa-mbv3-shapes", checkpoint=tmp_path / "junk.pt")


class _Custom:
    pass


def test_edgekit_layout_round_trip_fp16(tmp_path):
    net = randomize_weights(build_supernet("ofa-mbv3-shapes"), seed=5)
    path = tmp_path / "shapes.pt"
    save_checkpoint(net, path, meta={"seed": 5})
    assert path.stat().st_size < 2.5 * sum(p.numel() for p in net.parameters())  # stored as fp16
    loaded = build_supernet("ofa-mbv3-shapes", checkpoint=path)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().to(value.dtype)), key
    with pytest.raises(CheckpointError, match=r"is for space 'ofa-mbv3-shapes', not 'ofa-mbv3-w1.0'"):
        load_checkpoint(build_supernet("ofa-mbv3-w1.0"), path)
