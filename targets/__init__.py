"""Device profiles: ``load_target("jetson")`` reads the bundled ``targets/<name>.toml``.

Importing this package does no work: profiles are read (and cached) on first use. It stays
torch-free so the profiling agent can run on the device.

Example:
    >>> from edgekit.targets import load_target
    >>> t = load_target("jetson")
    >>> t.name, t.default_unit, t.unit("gpu").peak["int8"]
    ('jetson-orin-nano', 'gpu', 33.5)
"""

from __future__ import annotations

import difflib
from pathlib import Path

from edgekit.runtimes.errors import TargetError, UsageError

from .target import FORMATS, KINDS, PRECISIONS, RUNTIMES, ComputeUnit, Target
from .target_file import load_target_file

__all__ = [
    "ComputeUnit",
    "Target",
    "TargetError",
    "PRECISIONS",
    "KINDS",
    "FORMATS",
    "RUNTIMES",
    "load_target",
    "load_target_file",
    "list_targets",
    "target_names",
    "resolve_target",
]

_BUNDLED = Path(__file__).resolve().parent
_CACHE: dict[Path, Target] = {}  # bundled profiles by path, loaded once per process


def _load_bundled(path: Path) -> Target:
    if path not in _CACHE:
        _CACHE[path] = load_target_file(path)
    return _CACHE[path]


def _bundled_files() -> list[Path]:
    return sorted(_BUNDLED.glob("*.toml"))


def _by_name_and_alias() -> dict[str, Target]:
    index: dict[str, Target] = {}
    for path in _bundled_files():
        target = _load_bundled(path)
        for key in (target.name, *target.aliases):
            if key in index:
                raise TargetError(f"{path}: name or alias {key!r} is also used by {index[key].source}")
            index[key] = target
    return index


def _closest(key: str, candidates: list[str]) -> list[str]:
    """Up to 3 close candidates, keeping only those nearly as close as the best one."""
    scored = [(difflib.SequenceMatcher(None, key, c).ratio(), c) for c in candidates]
    scored = sorted((s for s in scored if s[0] >= 0.6), key=lambda s: (-s[0], s[1]))
    return [c for ratio, c in scored[:3] if ratio >= scored[0][0] - 0.1]


def load_target(name_or_alias: str) -> Target:
    """The bundled target called ``name_or_alias`` (a name or an alias, case-insensitive).

    Raises :class:`TargetError` suggesting the closest names when there is none.

    Example:
        >>> load_target("RPi5").name
        'raspberry-pi-5'
        >>> load_target("jetsn")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.TargetError: unknown target 'jetsn'; did you mean 'jetson'? (see: edgekit targets list)
    """
    key = name_or_alias.strip().lower()
    direct = _BUNDLED / f"{key}.toml"
    if key and "/" not in key and "\\" not in key and direct.is_file():
        return _load_bundled(direct)  # the common case reads one file, not all of them
    index = _by_name_and_alias()
    if key in index:
        return index[key]
    close = _closest(key, list(index))
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "known: " + ", ".join(sorted({t.name for t in index.values()}))
    raise TargetError(f"unknown target {name_or_alias!r}; {hint} (see: edgekit targets list)")


def list_targets() -> list[Target]:
    """Every bundled target, sorted by name.

    Example:
        >>> names = [t.name for t in list_targets()]
        >>> names == sorted(names) and "raspberry-pi-5" in names
        True
    """
    return sorted((_load_bundled(p) for p in _bundled_files()), key=lambda t: t.name)


def target_names() -> list[str]:
    """The names of the bundled targets, sorted (aliases not included).

    Example:
        >>> "jetson-orin-nano" in target_names()
        True
    """
    return [t.name for t in list_targets()]


def resolve_target(name: str | None, target_file: Path | None = None) -> Target:
    """A target by name/alias, or from a user TOML file (``--target`` or ``--target-file``, not both).

    Example:
        >>> resolve_target("jetson").name, resolve_target(None).name
        ('jetson-orin-nano', 'host')
    """
    if target_file is not None:
        if name not in (None, "host"):
            raise UsageError("pass either --target or --target-file, not both")
        return load_target_file(Path(target_file))
    return load_target(name or "host")
