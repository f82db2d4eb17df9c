"""The skeleton and elastic choices of a once-for-all MobileNetV3 space, as frozen data (no torch needed).

A space fixes the network's skeleton (widths, strides, activations, squeeze-excite per stage) and the
elastic choices (kernel size and expand ratio per block, depth per stage, input resolution). Subnet
configs, block specs, costs and the accuracy predictor read this data; :class:`OFASpace`
(:mod:`edgekit.models.ofa.space`) adds the search-space methods on top of them.

Example:
    >>> from edgekit.models.ofa import get_space
    >>> get_space("ofa-mbv3-shapes").block_in_width(4)
    24
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.runtimes.errors import UsageError

__all__ = ["OFASkeleton", "make_divisible"]

_ACTS = ("relu", "h_swish")


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
class OFASkeleton:
    """The skeleton and elastic choices of one MobileNetV3 supernet.

    Stage ``i`` (of ``len(stage_widths)``) holds up to ``max(depth_choices)`` blocks; the first block of a
    stage has stride ``stage_strides[i]``. Each elastic block is an inverted bottleneck (1x1 expand,
    depthwise kxk, optional squeeze-excite, 1x1 project) whose middle width is
    ``make_divisible(round(in_width * e), channel_divisor)``.

    The data every OFA module reads; :class:`edgekit.models.ofa.space.OFASpace` adds the search-space methods.

    Example:
        >>> from edgekit.models.ofa import get_space
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
            >>> from edgekit.models.ofa import get_space
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
