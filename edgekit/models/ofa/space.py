"""Search spaces of the once-for-all MobileNetV3 supernet (no torch needed).

A space is its skeleton and elastic choices (:class:`~edgekit.models.ofa.skeleton.OFASkeleton`: widths,
strides, activations, squeeze-excite per stage; kernel size and expand ratio per block, depth per stage,
input resolution) plus the methods of a search space (``edgekit.search.space.SearchSpace``): it samples,
mutates and crosses :class:`SubnetConfig` values, lists a subnet's blocks as pure specs, costs it and
loads its accuracy predictor, all through the torch-free modules config, specs, cost and predictor.
The same code builds the ImageNet spaces of once-for-all (``ofa-mbv3-w1.0``, ``ofa-mbv3-w1.2``) and the
small ``ofa-mbv3-shapes`` space for the procedural images of :mod:`edgekit.models.ofa.data`.

Example:
    >>> import random
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> space.num_blocks, space.stage_widths
    (20, (24, 40, 80, 112, 160))
    >>> space_size(space) > 10**19
    True
    >>> config = space.sample(random.Random(0))
    >>> space.blocks(config)[0].key, space.config_label(space.smallest())
    ('Conv-input:128x128x3-output:64x64x16', 'subnet at 128px')
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.precision import bytes_per_element

from .config import SubnetConfig, crossover, largest, mutate, sample, smallest
from .cost import count_macs, count_params
from .predictor import AccuracyPredictor, load_predictor
from .skeleton import OFASkeleton, make_divisible
from .specs import BlockSpec, subnet_blocks

if TYPE_CHECKING:
    from .released_predictor import ReleasedPredictor

__all__ = [
    "OFASpace",
    "SPACE_NAMES",
    "default_checkpoint",
    "get_space",
    "make_divisible",
    "mbv3_space",
    "shapes_space",
    "space_size",
    "tiny_space",
]

_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_DEFAULTS = {"ofa-mbv3-shapes": "ofa_mbv3_shapes.pt"}  # the checkpoint shipped per space

# (stem and first block, head) and the elastic blocks by (block, kernel, expand), at one resolution
_Specs = tuple[list[BlockSpec], list[BlockSpec], dict[tuple[int, int, int], BlockSpec]]


@dataclass(frozen=True)
class OFASpace(OFASkeleton):
    """One once-for-all space as a search space; its configs are :class:`SubnetConfig` values.

    The methods delegate to the module functions (:func:`sample`, :func:`mutate`, :func:`crossover`,
    :func:`count_macs`, :func:`subnet_blocks`, ...). In these MobileNetV3 spaces block ``b``'s shape
    depends only on the input resolution, its kernel and its expand ratio (dropping blocks at a stage's
    end changes no later shape), and the stem and head only on the resolution, so each space keeps its
    block specs per (resolution, block, kernel, expand) and a subnet's blocks are ~20 dict lookups.

    Example:
        >>> space = get_space("ofa-mbv3-tiny")
        >>> config = space.sample(random.Random(0))
        >>> space.blocks(config) == subnet_blocks(config, space), space.macs(config) > 0
        (True, True)
    """

    def sample(self, rng: random.Random) -> SubnetConfig:
        return sample(self, rng)

    def mutate(self, config: SubnetConfig, rng: random.Random, prob: float = 0.1) -> SubnetConfig:
        return mutate(config, self, rng, prob)

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        return crossover(a, b, self, rng)

    def smallest(self) -> SubnetConfig:
        return smallest(self)

    @cached_property
    def _specs(self) -> dict[int, _Specs]:
        return {}

    def _specs_at(self, r: int) -> _Specs:
        found = self._specs.get(r)
        if found is None:
            base, n = largest(self, r), self.num_blocks
            per_block: dict[tuple[int, int, int], BlockSpec] = {}
            for k in self.ks_choices:
                for e in self.e_choices:
                    specs = subnet_blocks(base.replace(ks=(k,) * n, e=(e,) * n), self)
                    per_block.update({(b, k, e): spec for b, spec in enumerate(specs[2:-4])})
            found = (specs[:2], specs[-4:], per_block)
            self._specs[r] = found
        return found

    def blocks(self, config: SubnetConfig) -> list[BlockSpec]:
        """The blocks ``config`` runs, in order: equal to :func:`subnet_blocks` (shared, cached specs)."""
        config.validate(self)
        head, tail, per_block = self._specs_at(config.r)
        depth, ks, e = self.max_depth, config.ks, config.e
        return [*head, *(per_block[(b, ks[b], e[b])] for s, d in enumerate(config.d)
                         for b in range(s * depth, s * depth + d)), *tail]

    def macs(self, config: SubnetConfig) -> int:
        return count_macs(config, self)

    def params(self, config: SubnetConfig) -> int:
        return count_params(config, self)

    def memory_mb(self, config: SubnetConfig, precision: str) -> float:
        """Weights (BatchNorm folded) plus the largest block's live activations, at ``precision``, in MB.

        Example:
            >>> space = get_space("ofa-mbv3-shapes")
            >>> big = largest(space)
            >>> space.memory_mb(space.smallest(), "int8") < space.memory_mb(big, "int8") < space.memory_mb(big, "fp32")
            True
        """
        blocks = self.blocks(config)
        elements = sum(b.weight_elems for b in blocks) + max(b.activation_elems for b in blocks)
        return elements * bytes_per_element(precision) / 1e6

    def accuracy_model(self, path: str | Path | None = None) -> AccuracyPredictor | ReleasedPredictor:
        """The accuracy predictor at ``path`` (an edgekit stem or once-for-all's released .pth), else the one
        shipped for this space, else a user-built one."""
        if path is not None:
            from .released_predictor import is_released, load_released

            if is_released(path):
                return load_released(path, self)
        return load_predictor(self, path)

    def config_dict(self, config: SubnetConfig) -> dict[str, Any]:
        """once-for-all's dict form ``{"ks", "e", "d", "r"}``."""
        return config.to_dict()

    def config_label(self, config: SubnetConfig) -> str:
        return f"subnet at {config.r}px"


def space_size(space: OFASpace, include_resolution: bool = False) -> int:
    """Number of distinct subnet architectures (kernel and expand of inactive blocks do not count).

    Each stage of depth ``d`` has ``(len(ks) * len(e)) ** d`` variants; stages multiply.

    Example:
        >>> space_size(get_space("ofa-mbv3-w1.0"))  # about 2.2e19, as in the once-for-all paper
        21758655492572485851
    """
    per_block = len(space.ks_choices) * len(space.e_choices)
    per_stage = sum(per_block**d for d in space.d_choices)
    total = per_stage**space.num_stages
    return total * len(space.resolutions) if include_resolution else total


def mbv3_space(width_mult: float = 1.0, num_classes: int = 1000) -> OFASpace:
    """once-for-all's ``ofa_mbv3_d234_e346_k357_w{width_mult}`` ImageNet space.

    Example:
        >>> mbv3_space(1.2).stage_widths
        (32, 48, 96, 136, 192)
    """
    base = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
    widths = [make_divisible(b * width_mult) for b in base]
    return OFASpace(
        name=f"ofa-mbv3-w{width_mult:.1f}",
        num_classes=num_classes,
        stem_width=widths[0],
        first_block_width=widths[1],
        stage_widths=tuple(widths[2:7]),
        stage_strides=(2, 2, 2, 1, 2),
        stage_acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
        stage_se=(False, True, False, True, True),
        final_expand_width=widths[7],
        feature_mix_width=widths[8],
    )


def shapes_space() -> OFASpace:
    """The small space for 10-class procedural images (:mod:`edgekit.models.ofa.data`), 32..64 px.

    Same elastic choices as once-for-all (ks 3/5/7, e 3/4/6, d 2/3/4), narrower widths, overall stride 16.

    Example:
        >>> shapes_space().resolutions
        (32, 36, 40, 44, 48, 52, 56, 60, 64)
    """
    return OFASpace(
        name="ofa-mbv3-shapes",
        num_classes=10,
        stem_width=16,
        first_block_width=16,
        stage_widths=(24, 32, 48, 64, 80),
        stage_strides=(2, 2, 1, 2, 1),
        stage_acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
        stage_se=(False, True, False, True, True),
        final_expand_width=256,
        feature_mix_width=384,
        resolutions=tuple(range(32, 65, 4)),
        dropout=0.1,
    )


def tiny_space() -> OFASpace:
    """A very small space (24..32 px, widths 8..24) for fast tests of training and distribution.

    Example:
        >>> tiny_space().num_blocks
        20
    """
    return OFASpace(
        name="ofa-mbv3-tiny",
        num_classes=10,
        stem_width=8,
        first_block_width=8,
        stage_widths=(8, 16, 16, 24, 24),
        stage_strides=(2, 2, 1, 2, 1),
        stage_acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
        stage_se=(False, True, False, True, True),
        final_expand_width=64,
        feature_mix_width=64,
        resolutions=(24, 28, 32),
        dropout=0.0,
    )


_BUILDERS = {
    "ofa-mbv3-w1.0": lambda: mbv3_space(1.0),
    "ofa-mbv3-w1.2": lambda: mbv3_space(1.2),
    "ofa-mbv3-shapes": shapes_space,
    "ofa-mbv3-tiny": tiny_space,
}
SPACE_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get_space(name: str) -> OFASpace:
    """The space registered under ``name`` (one of :data:`SPACE_NAMES`).

    Example:
        >>> get_space("ofa-mbv3-w1.2").final_expand_width
        1152
    """
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise UsageError(f"unknown OFA space {name!r}: allowed {list(SPACE_NAMES)}") from None


def default_checkpoint(space_name: str) -> Path | None:
    """The checkpoint shipped with edgekit for ``space_name`` (``None`` where none ships).

    Example:
        >>> default_checkpoint("ofa-mbv3-shapes").name
        'ofa_mbv3_shapes.pt'
        >>> default_checkpoint("ofa-mbv3-w1.0") is None
        True
    """
    get_space(space_name)  # validates the name
    name = _DEFAULTS.get(space_name)
    return _WEIGHTS_DIR / name if name else None
