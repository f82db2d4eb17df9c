"""Stated limits on what an input may make edgekit allocate, checked before the allocation.

- one generated or loaded input array: at most ``EDGEKIT_MAX_INPUT_MB`` MiB (default 1024), so a
  manifest that declares ``[batch, 3, 20000, 20000]`` or ``bench --batch 100000000`` is refused with
  one line instead of trying to allocate gigabytes;
- a ``.npy`` file: its header is read first and must describe an array that fits both that limit and
  the file's actual size (a header claiming 1e13 rows is refused, not handed to ``np.load``).

Example:
    >>> check_array_bytes((1, 3, 224, 224), "float32", "input 'x'")
    602112
    >>> check_array_bytes((1, 3, 20000, 20000), "float32", "input 'x'")
    Traceback (most recent call last):
    ...
    edgekit.runtimes.errors.InputMismatchError: input 'x': shape (1, 3, 20000, 20000) float32 needs 4.47 GiB, more than the 1.00 GiB limit (set EDGEKIT_MAX_INPUT_MB to allow more)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .errors import InputMismatchError, UsageError, one_line

__all__ = ["MAX_INPUT_ENV", "DEFAULT_MAX_INPUT_MB", "max_input_bytes", "check_array_bytes", "load_npy", "load_npz"]

MAX_INPUT_ENV = "EDGEKIT_MAX_INPUT_MB"
DEFAULT_MAX_INPUT_MB = 1024


def max_input_bytes() -> int:
    """The limit on one input array in bytes: ``$EDGEKIT_MAX_INPUT_MB`` MiB, default 1024 MiB."""
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_MB << 20
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{MAX_INPUT_ENV}={raw!r}: expected a number of MiB > 0")
    return int(value * (1 << 20))


def check_array_bytes(shape: Sequence[int], dtype: Any, what: str) -> int:
    """The bytes an array of ``shape`` and ``dtype`` takes; InputMismatchError above :func:`max_input_bytes`."""
    import numpy as np

    count = 1
    for dim in shape:
        if dim < 0:
            raise InputMismatchError(f"{what}: shape {tuple(shape)} has a negative size")
        count *= int(dim)
    itemsize = np.dtype(dtype).itemsize
    size, limit = count * itemsize, max_input_bytes()
    if size > limit:
        raise InputMismatchError(
            f"{what}: shape {tuple(int(d) for d in shape)} {np.dtype(dtype).name} needs {size / (1 << 30):.2f} GiB, "
            f"more than the {limit / (1 << 30):.2f} GiB limit (set {MAX_INPUT_ENV} to allow more)"
        )
    return size


def load_npy(path: str | Path, what: str):
    """``np.load`` of one ``.npy`` file (no pickles) after checking its header against the file size and
    :func:`max_input_bytes`; UsageError naming ``what`` and the file when it is not a plain .npy array."""
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=10000)
            header_end = handle.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise UsageError(f"{what}: {path} is not a readable .npy file ({one_line(exc)})") from exc
    if dtype.hasobject:
        raise UsageError(f"{what}: {path} holds Python objects (pickles are refused)")
    size = check_array_bytes(shape, dtype, f"{what}: {path}")
    actual = path.stat().st_size - header_end
    if actual < size:
        raise UsageError(f"{what}: {path}: its header declares {tuple(shape)} {dtype.name} ({size} bytes) but the file holds {actual}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{what}: {path} is not a readable .npy file ({exc})") from exc


def load_npz(path: str | Path, what: str) -> dict:
    """Every array of one ``.npz`` file (no pickles), after checking the members' uncompressed sizes against
    :func:`max_input_bytes` (a compressed archive can expand far beyond its file size); UsageError naming
    ``what`` and the file otherwise.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "d.npz"
        >>> np.savez(f, x=np.zeros(3))
        >>> load_npz(f, "--data")["x"].shape
        (3,)
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{what} {path}: not a readable .npz file ({one_line(exc)})") from None
    limit = max_input_bytes()
    if expanded > limit:
        raise UsageError(f"{what} {path}: its arrays expand to {expanded} bytes, more than the {limit} byte limit "
                         f"(set {MAX_INPUT_ENV} to allow more)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # numpy raises ValueError for pickled members, and others for damaged ones
        raise UsageError(f"{what} {path}: not a readable .npz file without pickles ({one_line(exc)})") from None
