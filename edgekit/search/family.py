"""What a searchable model family provides: its space, its accuracy predictor, its latency tables.

Example:
    >>> family = searchable("ofa-mbv3")
    >>> family.space.name
    'ofa-mbv3-shapes'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.runtimes.errors import UsageError

__all__ = ["Searchable", "searchable", "default_predictor_path"]

_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"
_SEARCHABLE = {"ofa-mbv3": "ofa-mbv3-shapes"}


@dataclass(frozen=True)
class Searchable:
    name: str
    space: object

    def predictor(self, path: Path | None = None):
        """The accuracy predictor (shipped unless ``path``), or a clear error saying how to build one."""
        from .accuracy import AccuracyPredictor

        path = Path(path) if path else default_predictor_path(self.space.name)
        if not path.with_suffix(".json").is_file():
            raise UsageError(
                f"no accuracy predictor at {path.with_suffix('.json')}: build one with "
                f"python -m edgekit.search.accuracy_data --space {self.space.name} --out {path}"
            )
        return AccuracyPredictor.load(path, self.space)

    def tables(self, target, threads: int | None) -> dict:
        """Measured block tables for this space on ``target`` by precision (``edgekit lut build``)."""
        from edgekit.targets.predictor import table_file
        from edgekit.targets.lut import BlockTable
        from edgekit.targets.predictor import tables_dir

        found = {}
        for precision in ("fp32", "fp16", "int8"):
            path = table_file(tables_dir(), self.space.name, target.name, precision, threads)
            if path.is_file():
                found[precision] = BlockTable.load(path)
        return found


def default_predictor_path(space_name: str) -> Path:
    return _WEIGHTS / f"{space_name.replace('-', '_').replace('.', '_')}_accuracy"


def searchable(model: str | None) -> Searchable:
    """The searchable family for ``--model`` (only once-for-all supernets so far)."""
    from edgekit.models.ofa import SPACE_NAMES, get_space

    name = model or "ofa-mbv3"
    space_name = _SEARCHABLE.get(name, name if name in SPACE_NAMES else None)
    if space_name is None:
        raise UsageError(f"--model {name!r} has no search space; searchable: {sorted(_SEARCHABLE)} or a space "
                         f"name ({', '.join(SPACE_NAMES)})")
    return Searchable(name, get_space(space_name))
