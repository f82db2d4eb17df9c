"""Where fitted latency models live: per-op calibrations and block tables, beside the latency store.

One JSON file per (target, unit, precision, threads) for a calibration (``edgekit calibrate``), one
per (space, target, precision, threads) for a block table (``edgekit lut build|import``).

Example:
    >>> from pathlib import Path
    >>> calibration_file(Path("cache"), "host", "cpu", "fp32", 1).as_posix()
    'cache/calibrations/host-cpu-fp32-t1.json'
    >>> table_file(Path("cache"), "ofa-mbv3-shapes", "host", "int8", None).as_posix()
    'cache/tables/ofa-mbv3-shapes-host-int8-tall.json'
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.runtimes.errors import TargetError

from .calibrated import Calibration
from .target import Target

__all__ = ["tables_dir", "calibration_file", "table_file", "load_calibration"]


def tables_dir() -> Path:
    """The directory of fitted calibrations and block tables: beside the latency store."""
    from .store import default_store_path

    return default_store_path().parent


_PLAIN_NAME = re.compile(r"^[^/\\\0]{1,100}$")


def _plain(**names: str) -> None:
    """Each name becomes part of one file name in the tables folder: no '/', backslash or NUL, 1-100 characters.

    Example:
        >>> _plain(target="../../../X")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.TargetError: target '../../../X': expected a name without '/', backslash or NUL (1-100 characters): it names a file in the tables folder
    """
    for field, name in names.items():
        if not isinstance(name, str) or not _PLAIN_NAME.match(name):
            raise TargetError(f"{field} {name!r}: expected a name without '/', backslash or NUL (1-100 characters): "
                              "it names a file in the tables folder")


def calibration_file(directory: Path, target: str, unit: str, precision: str, threads: int | None) -> Path:
    """Where the calibration of ``unit`` of ``target`` at ``precision`` and ``threads`` lives."""
    _plain(target=target, unit=unit, precision=precision)
    return Path(directory) / "calibrations" / f"{target}-{unit}-{precision}-t{threads or 'all'}.json"


def table_file(directory: Path, space: str, target: str, precision: str, threads: int | None) -> Path:
    """Where the block table of ``space`` on ``target`` lives (``edgekit lut build|import``)."""
    _plain(space=space, target=target, precision=precision)
    return Path(directory) / "tables" / f"{space}-{target}-{precision}-t{threads or 'all'}.json"


def load_calibration(target: Target, unit: str, precision: str, threads: int | None, directory: Path | None = None) -> Calibration | None:
    """The saved calibration for these settings, or None when there is none."""
    path = calibration_file(directory or tables_dir(), target.name, unit, precision, threads)
    return Calibration.load(path) if path.is_file() else None
