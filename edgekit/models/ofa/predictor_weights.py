"""The torch-free copy of an accuracy predictor's weights: ``STEM.npz`` regenerated from ``STEM.pt``.

The .pt (a tensor-only state dict) stays the reference; the .npz holds the same arrays under the same
names, written byte-reproducibly (sorted entries, fixed timestamps), and loads with numpy alone
(``allow_pickle=False``). :meth:`AccuracyPredictor.save` writes both; regenerate a shipped copy with

    python -m edgekit.models.ofa.predictor_weights edgekit/models/weights/ofa_mbv3_shapes_accuracy

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> stem = Path(tempfile.mkdtemp()) / "p"
    >>> write_npz({"0.bias": np.zeros(2, np.float32)}, npz_path(stem)).name
    'p.npz'
    >>> read_weights(stem)["0.bias"].tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from edgekit.runtimes.errors import UsageError

__all__ = ["npz_path", "pt_to_npz", "read_weights", "write_npz", "main"]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: the same bytes on every run


def npz_path(stem: str | Path) -> Path:
    return Path(stem).with_suffix(".npz")


def write_npz(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    """``np.savez``'s layout (one ``NAME.npy`` per array, stored), byte-reproducible; written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH), "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    tmp.replace(path)
    return path


def _read_pt(source: Path) -> dict[str, np.ndarray]:
    import torch

    try:
        state = torch.load(source, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"{source}: cannot read the predictor's weights ({exc})") from exc
    return {name: tensor.numpy() for name, tensor in state.items()}


def pt_to_npz(stem: str | Path) -> Path:
    """Write ``STEM.npz`` from the state dict in ``STEM.pt`` (needs torch); returns the .npz path."""
    return write_npz(_read_pt(Path(stem).with_suffix(".pt")), npz_path(stem))


def read_weights(stem: str | Path) -> dict[str, np.ndarray]:
    """The state dict from ``STEM.npz`` (numpy only), or from ``STEM.pt`` (torch) where no .npz exists."""
    path, source = npz_path(stem), Path(stem).with_suffix(".pt")
    if not path.is_file() and source.is_file():
        try:
            import torch  # noqa: F401 - only to say what is missing
        except ImportError:
            raise UsageError(f"{path} is missing and reading {source} needs torch: write the .npz with "
                             f"python -m edgekit.models.ofa.predictor_weights {stem}") from None
        return _read_pt(source)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: cannot read the predictor's weights ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write STEM.npz, the numpy copy of an accuracy predictor's STEM.pt.")
    parser.add_argument("stem", type=Path, nargs="+", help="path stem of the predictor (without .pt)")
    for stem in parser.parse_args(argv).stem:
        print(f"wrote {pt_to_npz(stem)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
