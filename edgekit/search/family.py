"""The searchable families: ``--model`` names mapped to a :class:`SearchSpace` factory.

A family plugs into ``edgekit select`` (and ``export --budget-ms``) by implementing the protocol of
:mod:`edgekit.search.space` and calling :func:`register_search_space`; the once-for-all spaces are
registered here (``ofa-mbv3`` and each space name).

Example:
    >>> family = searchable("ofa-mbv3")
    >>> family.space.name
    'ofa-mbv3-shapes'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit.runtimes.errors import UsageError

from .space import AccuracyModel, SearchSpace

__all__ = ["Searchable", "searchable", "registered", "has_search_space", "register_search_space",
           "default_predictor_path"]

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}


@dataclass(frozen=True)
class Searchable:
    name: str
    space: SearchSpace

    def predictor(self, path: Path | None = None) -> AccuracyModel:
        """The space's accuracy model (shipped unless ``path``), or a clear error saying how to build one."""
        return self.space.accuracy_model(path)

    def tables(self, target, threads: int | None) -> dict:
        """Measured block tables for this space on ``target`` by precision (``edgekit lut build``)."""
        from edgekit.runtimes.precision import PRECISIONS
        from edgekit.targets.lut import BlockTable
        from edgekit.targets.predictor import table_file, tables_dir

        found = {}
        for precision in PRECISIONS:
            path = table_file(tables_dir(), self.space.name, target.name, precision, threads)
            if path.is_file():
                found[precision] = BlockTable.load(path)
        return found


def register_search_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Make ``--model name`` searchable; ``factory`` builds its space (called once per search).

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> register_search_space("ofa-mbv3-small", lambda: get_space("ofa-mbv3-tiny"))
        >>> searchable("ofa-mbv3-small").space.name
        'ofa-mbv3-tiny'
        >>> _ = _FACTORIES.pop("ofa-mbv3-small")
    """
    _FACTORIES[name] = factory


def _register_builtins() -> None:
    from edgekit.models.ofa import SPACE_NAMES, get_space

    _FACTORIES.setdefault("ofa-mbv3", lambda: get_space("ofa-mbv3-shapes"))
    for space_name in SPACE_NAMES:
        _FACTORIES.setdefault(space_name, lambda space_name=space_name: get_space(space_name))


def default_predictor_path(space_name: str) -> Path:
    """The shipped accuracy predictor's path stem for a once-for-all space (moved to the OFA family)."""
    from edgekit.models.ofa.predictor import default_predictor_path as ofa_path

    return ofa_path(space_name)


def registered() -> tuple[str, ...]:
    """The ``--model`` names with a search space (built-ins and plug-ins).

    Example:
        >>> "ofa-mbv3" in registered()
        True
    """
    _register_builtins()
    return tuple(_FACTORIES)


def has_search_space(model: str) -> bool:
    """Whether ``--model`` names a search space (a registered family or a once-for-all space name).

    Example:
        >>> has_search_space("ofa-mbv3"), has_search_space("seg-simple")
        (True, False)
    """
    from edgekit.models.ofa import SPACE_NAMES

    return model in SPACE_NAMES or model in registered()


def searchable(model: str | None) -> Searchable:
    """The searchable family for ``--model`` (default ``ofa-mbv3``)."""
    _register_builtins()
    name = model or "ofa-mbv3"
    factory = _FACTORIES.get(name)
    if factory is None:
        from edgekit.models.ofa import SPACE_NAMES

        families = sorted(n for n in _FACTORIES if n not in SPACE_NAMES)
        raise UsageError(f"--model {name!r} has no search space; searchable: {families} or a space "
                         f"name ({', '.join(SPACE_NAMES)})")
    return Searchable(name, factory())
