"""``SubnetConfig``: one subnet of an OFA space as a frozen value, plus sampling, mutation, crossover.

The dict form is once-for-all's: ``{"ks": [one per block], "e": [one per block], "d": [one per stage],
"r": resolution}``. Kernel and expand entries of blocks beyond a stage's depth are kept (they are part of
once-for-all's form) but do not change the network.

Example:
    >>> import random
    >>> from edgekit.models.ofa.space import get_space
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> cfg = sample(space, random.Random(0))
    >>> SubnetConfig.from_dict(cfg.to_dict(), space) == cfg
    True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edgekit.runtimes.errors import UsageError

from .skeleton import OFASkeleton

__all__ = ["SubnetConfig", "SubnetConfigError", "crossover", "largest", "mutate", "sample", "smallest"]


class SubnetConfigError(UsageError):
    """A subnet config that does not fit its space (wrong length, a value not among the choices)."""


@dataclass(frozen=True)
class SubnetConfig:
    """Kernel size and expand ratio per block, depth per stage, input resolution.

    Construct with :meth:`from_dict` / :meth:`from_json` / :meth:`from_file` to validate against a space;
    the plain constructor only normalises lists to tuples and checks types.

    Example:
        >>> from edgekit.models.ofa.space import get_space
        >>> space = get_space("ofa-mbv3-shapes")
        >>> cfg = SubnetConfig.from_dict({"ks": [3] * 20, "e": [4] * 20, "d": [2] * 5, "r": 48}, space)
        >>> cfg.r, cfg.active_blocks(space)[:3]
        (48, (0, 1, 4))
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int

    def __post_init__(self) -> None:
        for field in ("ks", "e", "d"):
            value = getattr(self, field)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise SubnetConfigError(f"subnet config field {field!r} must be a list of ints, got {value!r}")
            value = tuple(value)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise SubnetConfigError(f"subnet config field {field!r} must hold ints only, got {list(value)}")
            object.__setattr__(self, field, value)
        if not isinstance(self.r, int) or isinstance(self.r, bool):
            raise SubnetConfigError(f"subnet config field 'r' must be an int, got {self.r!r}")

    # -- validation and I/O ---------------------------------------------------------------------
    def validate(self, space: OFASkeleton) -> "SubnetConfig":
        """Return ``self`` if it fits ``space``; else raise :class:`SubnetConfigError` naming the field.

        Example:
            >>> from edgekit.models.ofa.space import get_space
            >>> space = get_space("ofa-mbv3-w1.0")
            >>> bad = SubnetConfig(ks=(9,) * 20, e=(3,) * 20, d=(2,) * 5, r=224)
            >>> bad.validate(space)
            Traceback (most recent call last):
            ...
            edgekit.models.ofa.config.SubnetConfigError: subnet config field 'ks'[0] = 9 is not allowed in space 'ofa-mbv3-w1.0': allowed [3, 5, 7]
        """
        checks = (
            ("ks", space.num_blocks, space.ks_choices),
            ("e", space.num_blocks, space.e_choices),
            ("d", space.num_stages, space.d_choices),
        )
        for field, length, allowed in checks:
            value = getattr(self, field)
            if len(value) != length:
                raise SubnetConfigError(
                    f"subnet config field {field!r} has {len(value)} entries, space {space.name!r} needs {length}"
                )
            for i, v in enumerate(value):
                if v not in allowed:
                    raise SubnetConfigError(
                        f"subnet config field {field!r}[{i}] = {v} is not allowed in space {space.name!r}: "
                        f"allowed {list(allowed)}"
                    )
        if self.r not in space.resolutions:
            rs = space.resolutions
            raise SubnetConfigError(
                f"subnet config field 'r' = {self.r} is not allowed in space {space.name!r}: "
                f"allowed {rs[0]}..{rs[-1]} ({list(rs)})"
            )
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], space: OFASkeleton) -> "SubnetConfig":
        """Build and validate from once-for-all's dict form (``r`` defaults to the largest resolution).

        Example:
            >>> from edgekit.models.ofa.space import get_space
            >>> space = get_space("ofa-mbv3-w1.0")
            >>> SubnetConfig.from_dict({**space.max_config_dict(), "r": 160}, space).r
            160
        """
        if not isinstance(data, Mapping):
            raise SubnetConfigError(f"subnet config must be a JSON object with ks, e, d, r; got {type(data).__name__}")
        unknown = sorted(set(data) - {"ks", "e", "d", "r", "wid"})
        if unknown:
            raise SubnetConfigError(f"subnet config has unknown fields {unknown}: allowed ['ks', 'e', 'd', 'r']")
        if data.get("wid") is not None:  # once-for-all's finder writes "wid": None for this family
            raise SubnetConfigError(f"subnet config field 'wid' = {data['wid']!r}: this space has no elastic width, allowed [None]")
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise SubnetConfigError(f"subnet config is missing field(s) {missing}: needs ks, e, d (and r)")
        r = data.get("r", max(space.resolutions))
        if isinstance(r, (list, tuple)) and len(r) == 1:  # once-for-all's finders write "r": [224]
            r = r[0]
        return cls(ks=data["ks"], e=data["e"], d=data["d"], r=r).validate(space)

    @classmethod
    def from_json(cls, text: str, space: OFASkeleton) -> "SubnetConfig":
        """Parse and validate a JSON string in once-for-all's dict form.

        Example:
            >>> from edgekit.models.ofa.space import get_space
            >>> space = get_space("ofa-mbv3-shapes")
            >>> SubnetConfig.from_json(largest(space).to_json(), space) == largest(space)
            True
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubnetConfigError(f"subnet config is not valid JSON: {exc}") from None
        return cls.from_dict(data, space)

    @classmethod
    def from_file(cls, path: str | Path, space: OFASkeleton) -> "SubnetConfig":
        """Read and validate a JSON file in once-for-all's dict form.

        Example:
            >>> import tempfile, os
            >>> from edgekit.models.ofa.space import get_space
            >>> space = get_space("ofa-mbv3-shapes")
            >>> p = os.path.join(tempfile.mkdtemp(), "net.json"); _ = open(p, "w").write(smallest(space).to_json())
            >>> SubnetConfig.from_file(p, space) == smallest(space)
            True
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SubnetConfigError(f"cannot read subnet config {str(path)!r}: {exc.strerror}") from None
        return cls.from_json(text, space)

    def to_dict(self) -> dict[str, Any]:
        """once-for-all's dict form (lists of ints)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r}

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    # -- structure --------------------------------------------------------------------------------
    def active_blocks(self, space: OFASkeleton) -> tuple[int, ...]:
        """Indices of the elastic blocks that run, in order."""
        return tuple(s * space.max_depth + i for s, depth in enumerate(self.d) for i in range(depth))

    def canonical(self, space: OFASkeleton) -> "SubnetConfig":
        """The same network with inactive blocks' kernel/expand set to the smallest choice (for dedup)."""
        active = set(self.active_blocks(space))
        ks = tuple(k if b in active else min(space.ks_choices) for b, k in enumerate(self.ks))
        e = tuple(v if b in active else min(space.e_choices) for b, v in enumerate(self.e))
        return SubnetConfig(ks=ks, e=e, d=self.d, r=self.r)

    def replace(self, **changes: Any) -> "SubnetConfig":
        """A copy with some fields changed (not validated; call :meth:`validate`)."""
        return SubnetConfig(**{**self.to_dict(), **changes})


def largest(space: OFASkeleton, resolution: int | None = None) -> SubnetConfig:
    """The largest subnet of ``space`` (at the largest resolution unless given).

    Example:
        >>> from edgekit.models.ofa.space import get_space
        >>> largest(get_space("ofa-mbv3-w1.0")).d
        (4, 4, 4, 4, 4)
    """
    data = space.max_config_dict()
    if resolution is not None:
        data["r"] = resolution
    return SubnetConfig.from_dict(data, space)


def smallest(space: OFASkeleton, resolution: int | None = None) -> SubnetConfig:
    """The smallest subnet of ``space`` (at the smallest resolution unless given).

    Example:
        >>> from edgekit.models.ofa.space import get_space
        >>> smallest(get_space("ofa-mbv3-w1.0")).r
        128
    """
    data = space.min_config_dict()
    if resolution is not None:
        data["r"] = resolution
    return SubnetConfig.from_dict(data, space)


def sample(
    space: OFASkeleton,
    rng: random.Random,
    ks: tuple[int, ...] | None = None,
    e: tuple[int, ...] | None = None,
    d: tuple[int, ...] | None = None,
    r: tuple[int, ...] | None = None,
) -> SubnetConfig:
    """A uniformly random subnet; ``ks``/``e``/``d``/``r`` restrict the choices (progressive shrinking).

    Example:
        >>> import random
        >>> from edgekit.models.ofa.space import get_space
        >>> space = get_space("ofa-mbv3-w1.0")
        >>> sample(space, random.Random(1)) == sample(space, random.Random(1))
        True
        >>> set(sample(space, random.Random(2), ks=(7,)).ks)
        {7}
    """
    ks_set, e_set = ks or space.ks_choices, e or space.e_choices
    d_set, r_set = d or space.d_choices, r or space.resolutions
    return SubnetConfig(
        ks=tuple(rng.choice(ks_set) for _ in range(space.num_blocks)),
        e=tuple(rng.choice(e_set) for _ in range(space.num_blocks)),
        d=tuple(rng.choice(d_set) for _ in range(space.num_stages)),
        r=rng.choice(r_set),
    ).validate(space)


def mutate(config: SubnetConfig, space: OFASkeleton, rng: random.Random, prob: float = 0.1) -> SubnetConfig:
    """Resample each gene (kernel, expand, depth, resolution) with probability ``prob``.

    Example:
        >>> import random
        >>> from edgekit.models.ofa.space import get_space
        >>> space = get_space("ofa-mbv3-w1.0")
        >>> parent = largest(space)
        >>> mutate(parent, space, random.Random(0), prob=0.0) == parent
        True
    """
    if not 0.0 <= prob <= 1.0:
        raise UsageError(f"mutation prob must be in [0, 1], got {prob}")
    config.validate(space)

    def pick(current: int, choices: tuple[int, ...]) -> int:
        return rng.choice(choices) if rng.random() < prob else current

    return SubnetConfig(
        ks=tuple(pick(k, space.ks_choices) for k in config.ks),
        e=tuple(pick(v, space.e_choices) for v in config.e),
        d=tuple(pick(v, space.d_choices) for v in config.d),
        r=pick(config.r, space.resolutions),
    )


def crossover(a: SubnetConfig, b: SubnetConfig, space: OFASkeleton, rng: random.Random) -> SubnetConfig:
    """Each gene from ``a`` or ``b`` with equal probability.

    Example:
        >>> import random
        >>> from edgekit.models.ofa.space import get_space
        >>> space = get_space("ofa-mbv3-w1.0")
        >>> child = crossover(largest(space), smallest(space), space, random.Random(0))
        >>> set(child.ks) <= {3, 7}
        True
    """
    a.validate(space)
    b.validate(space)

    def mix(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(p if rng.random() < 0.5 else q for p, q in zip(x, y))

    return SubnetConfig(
        ks=mix(a.ks, b.ks), e=mix(a.e, b.e), d=mix(a.d, b.d), r=a.r if rng.random() < 0.5 else b.r
    )
