"""Search spaces of the once-for-all MobileNetV3 supernet, as frozen data (no torch needed).

A space fixes the network's skeleton (widths, strides, activations, squeeze-excite per stage) and the
elastic choices (kernel size and expand ratio per block, depth per stage, input resolution). The same
code builds the ImageNet spaces of once-for-all (``ofa-mbv3-w1.0``, ``ofa-mbv3-w1.2``) and the small
``ofa-mbv3-shapes`` space for the procedural images of :mod:`edgekit.models.ofa.data`.

Example:
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> space.num_blocks, space.stage_widths
    (20, (24, 40, 80, 112, 160))
    >>> space_size(space) > 10**19
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.runtimes.errors import UsageError

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

_ACTS = ("relu", "h_swish")
_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_DEFAULTS = {"ofa-mbv3-shapes": "ofa_mbv3_shapes.pt"}  # the checkpoint shipped per space


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (never below it, never 10% under ``value``).

    Example:
        >>> make_divisible(16 * 1.2), make_divisible(112 * 1.2), make_divisible(24 * 3)
        (24, 136, 72)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class OFASpace:
    """The skeleton and elastic choices of one MobileNetV3 supernet.

    Stage ``i`` (of ``len(stage_widths)``) holds up to ``max(depth_choices)`` blocks; the first block of a
    stage has stride ``stage_strides[i]``. Each elastic block is an inverted bottleneck (1x1 expand,
    depthwise kxk, optional squeeze-excite, 1x1 project) whose middle width is
    ``make_divisible(round(in_width * e), channel_divisor)``.

    Example:
        >>> s = get_space("ofa-mbv3-shapes")
        >>> s.max_config_dict()["d"]
        [4, 4, 4, 4, 4]
    """

    name: str
    num_classes: int
    stem_width: int
    first_block_width: int
    stage_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]
    stage_acts: tuple[str, ...]
    stage_se: tuple[bool, ...]
    final_expand_width: int
    feature_mix_width: int
    ks_choices: tuple[int, ...] = (3, 5, 7)
    e_choices: tuple[int, ...] = (3, 4, 6)
    d_choices: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    stem_stride: int = 2
    in_channels: int = 3
    dropout: float = 0.1
    se_reduction: int = 4
    channel_divisor: int = 8
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        n = len(self.stage_widths)
        for field in ("stage_strides", "stage_acts", "stage_se"):
            if len(getattr(self, field)) != n:
                raise UsageError(f"space {self.name!r}: {field} needs {n} entries, one per stage")
        for act in self.stage_acts:
            if act not in _ACTS:
                raise UsageError(f"space {self.name!r}: stage_acts entry {act!r} is not one of {_ACTS}")
        for field in ("ks_choices", "e_choices", "d_choices", "resolutions"):
            values = getattr(self, field)
            if not values or tuple(sorted(set(values))) != tuple(values) or min(values) < 1:
                raise UsageError(f"space {self.name!r}: {field} must be distinct positive ints, ascending")
        if any(k % 2 == 0 for k in self.ks_choices):
            raise UsageError(f"space {self.name!r}: ks_choices must be odd, got {self.ks_choices}")

    # -- derived shape facts -------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stage_widths)

    @property
    def max_depth(self) -> int:
        return max(self.d_choices)

    @property
    def num_blocks(self) -> int:
        """Elastic blocks in the supernet (stages x max depth), the length of ``ks`` and ``e``."""
        return self.num_stages * self.max_depth

    @property
    def max_kernel(self) -> int:
        return max(self.ks_choices)

    def stage_of(self, block: int) -> int:
        """Stage index of elastic block ``block``."""
        return block // self.max_depth

    def block_in_width(self, block: int) -> int:
        """Input channels of elastic block ``block`` (fixed: this space has no elastic width)."""
        stage, pos = divmod(block, self.max_depth)
        if pos > 0:
            return self.stage_widths[stage]
        return self.first_block_width if stage == 0 else self.stage_widths[stage - 1]

    def block_stride(self, block: int) -> int:
        stage, pos = divmod(block, self.max_depth)
        return self.stage_strides[stage] if pos == 0 else 1

    def mid_width(self, block: int, expand: int) -> int:
        """Middle (expanded) channels of ``block`` at expand ratio ``expand``."""
        return make_divisible(round(self.block_in_width(block) * expand), self.channel_divisor)

    def se_width(self, mid: int) -> int:
        """Squeeze-excite hidden channels for ``mid`` middle channels."""
        return make_divisible(mid // self.se_reduction, self.channel_divisor)

    def max_config_dict(self) -> dict:
        """The largest subnet in once-for-all's dict form."""
        return {
            "ks": [self.max_kernel] * self.num_blocks,
            "e": [max(self.e_choices)] * self.num_blocks,
            "d": [self.max_depth] * self.num_stages,
            "r": max(self.resolutions),
        }

    def min_config_dict(self) -> dict:
        """The smallest subnet in once-for-all's dict form."""
        return {
            "ks": [min(self.ks_choices)] * self.num_blocks,
            "e": [min(self.e_choices)] * self.num_blocks,
            "d": [min(self.d_choices)] * self.num_stages,
            "r": min(self.resolutions),
        }

    def input_spec(self, resolution: int | None = None, batch: int | str = "batch"):
        """The :class:`TensorSpec` of the image input at ``resolution`` (default: the largest).

        Example:
            >>> get_space("ofa-mbv3-shapes").input_spec(48)
            TensorSpec(name='image', shape=('batch', 3, 48, 48), dtype='float32')
        """
        from edgekit.runtimes.spec import TensorSpec

        r = max(self.resolutions) if resolution is None else resolution
        if r not in self.resolutions:
            raise UsageError(f"resolution {r} is not in space {self.name!r}: allowed {_span(self.resolutions)}")
        return TensorSpec("image", (batch, self.in_channels, r, r), "float32")

    def output_spec(self, batch: int | str = "batch"):
        """The :class:`TensorSpec` of the logits output."""
        from edgekit.runtimes.spec import TensorSpec

        return TensorSpec("logits", (batch, self.num_classes), "float32")


def _span(values: tuple[int, ...]) -> str:
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 3 and len(steps) == 1:
        return f"{values[0]}..{values[-1]} step {steps.pop()}"
    return str(list(values))


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
