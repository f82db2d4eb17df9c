"""OFA search spaces and SubnetConfig: size, validation messages, JSON, sample/mutate/crossover."""

from __future__ import annotations

import json
import random

import pytest

from edgekit.models.ofa import (
    SPACE_NAMES,
    SubnetConfig,
    SubnetConfigError,
    crossover,
    get_space,
    largest,
    mutate,
    sample,
    smallest,
    space_size,
)
from edgekit.runtimes.errors import EdgekitError, UsageError


def test_w10_space_matches_once_for_all():
    space = get_space("ofa-mbv3-w1.0")
    assert space.num_blocks == 20 and space.num_stages == 5
    assert space.ks_choices == (3, 5, 7) and space.e_choices == (3, 4, 6) and space.d_choices == (2, 3, 4)
    assert space.resolutions == tuple(range(128, 225, 4)) and len(space.resolutions) == 25
    assert space.stage_widths == (24, 40, 80, 112, 160)
    assert (space.final_expand_width, space.feature_mix_width) == (960, 1280)
    # (9 + 9^2 ... ) per stage: 9^2 + 9^3 + 9^4 = 7371 variants, 5 stages
    assert space_size(space) == 7371**5 > 10**19
    assert space_size(space, include_resolution=True) == 25 * 7371**5
    w12 = get_space("ofa-mbv3-w1.2")
    assert w12.stage_widths == (32, 48, 96, 136, 192) and w12.stem_width == 24
    shapes = get_space("ofa-mbv3-shapes")
    assert shapes.num_classes == 10 and shapes.resolutions[0] == 32 and shapes.resolutions[-1] == 64
    assert space_size(shapes) > 10**19


def test_unknown_space_names_allowed():
    with pytest.raises(UsageError, match=r"unknown OFA space 'ofa-x'.*ofa-mbv3-w1.0"):
        get_space("ofa-x")
    assert set(SPACE_NAMES) == {"ofa-mbv3-w1.0", "ofa-mbv3-w1.2", "ofa-mbv3-shapes", "ofa-mbv3-tiny"}


def test_dict_form_round_trip_and_file(tmp_path):
    space = get_space("ofa-mbv3-w1.0")
    data = {"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 6] * 5, "d": [2, 3, 4, 2, 3], "r": 176}
    cfg = SubnetConfig.from_dict(data, space)
    assert cfg.to_dict() == data and isinstance(cfg.ks, tuple)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(data))
    assert SubnetConfig.from_file(path, space) == cfg
    assert SubnetConfig.from_json(cfg.to_json(), space) == cfg
    # once-for-all's evolution finder writes "wid": None and "r": [r]
    assert SubnetConfig.from_dict({**data, "wid": None, "r": [176]}, space) == cfg
    assert cfg.active_blocks(space) == (0, 1, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 17, 18)
    with pytest.raises(AttributeError):
        cfg.r = 128  # frozen


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ks": [3] * 19}, r"field 'ks' has 19 entries, space 'ofa-mbv3-w1.0' needs 20"),
        ({"e": [3] * 19 + [5]}, r"field 'e'\[19\] = 5 is not allowed .*allowed \[3, 4, 6\]"),
        ({"d": [2, 3, 4, 5, 2]}, r"field 'd'\[3\] = 5 is not allowed .*allowed \[2, 3, 4\]"),
        ({"r": 130}, r"field 'r' = 130 is not allowed .*allowed 128..224"),
        ({"ks": "357"}, r"field 'ks' must be a list of ints"),
        ({"e": [3.0] * 20}, r"field 'e' must hold ints only"),
        ({"x": 1}, r"unknown fields \['x'\]"),
        ({"wid": 1}, r"field 'wid' = 1: this space has no elastic width, allowed \[None\]"),
    ],
)
def test_invalid_configs_name_field_and_allowed_values(change, message):
    space = get_space("ofa-mbv3-w1.0")
    data = {**space.max_config_dict(), **change}
    with pytest.raises(SubnetConfigError, match=message) as info:
        SubnetConfig.from_dict(data, space)
    assert isinstance(info.value, UsageError) and isinstance(info.value, EdgekitError)
    assert "\n" not in str(info.value)


def test_bad_json_and_missing_file(tmp_path):
    space = get_space("ofa-mbv3-shapes")
    with pytest.raises(SubnetConfigError, match="not valid JSON"):
        SubnetConfig.from_json("{ks: 3}", space)
    with pytest.raises(SubnetConfigError, match="cannot read subnet config"):
        SubnetConfig.from_file(tmp_path / "absent.json", space)
    with pytest.raises(SubnetConfigError, match=r"missing field\(s\) \['d'\]"):
        SubnetConfig.from_dict({"ks": [3] * 20, "e": [3] * 20}, space)


def test_sample_mutate_crossover_are_seeded_and_valid():
    space = get_space("ofa-mbv3-w1.0")
    a = [sample(space, random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    configs = [sample(space, random.Random(i)) for i in range(50)]
    assert len({c.canonical(space) for c in configs}) == 50
    rng = random.Random(3)
    for c in configs[:20]:
        m = mutate(c, space, rng, prob=0.3)
        assert m.validate(space) is m and m != c
        child = crossover(c, configs[-1], space, rng)
        child.validate(space)
        for gene in ("ks", "e", "d"):
            assert all(x in (p, q) for x, p, q in zip(getattr(child, gene), getattr(c, gene), getattr(configs[-1], gene)))
    assert mutate(configs[0], space, random.Random(1), prob=1.0) != configs[0]
    with pytest.raises(UsageError, match=r"prob must be in \[0, 1\]"):
        mutate(configs[0], space, rng, prob=1.5)
    restricted = sample(space, random.Random(0), ks=(7,), e=(6,), d=(4,))
    assert restricted.canonical(space) == largest(space, restricted.r).canonical(space)


def test_largest_smallest_and_input_spec():
    space = get_space("ofa-mbv3-shapes")
    assert largest(space).r == 64 and smallest(space).r == 32
    spec = space.input_spec(48)
    assert spec.name == "image" and spec.shape == ("batch", 3, 48, 48) and spec.dtype == "float32"
    assert space.output_spec().shape == ("batch", 10)
    with pytest.raises(UsageError, match=r"resolution 50 is not in space 'ofa-mbv3-shapes': allowed 32..64 step 4"):
        space.input_spec(50)
