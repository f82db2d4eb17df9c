"""``edgekit run``: run a bundle or .onnx on .npy inputs and write .npy outputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List

import numpy as np
import typer

from edgekit.runtimes.errors import UsageError

from .common import emit, out, table

__all__ = ["register", "read_inputs"]


def read_inputs(specs: List[str], input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Parse ``--input x.npy`` (one-input models) or ``--input name=x.npy`` into arrays."""
    feeds = {}
    for item in specs:
        name, sep, file_name = item.partition("=")
        if not sep:
            if len(input_names) != 1:
                raise UsageError(f"--input {item}: the model has inputs {list(input_names)}; use --input NAME=FILE.npy")
            name, file_name = input_names[0], item
        if name in feeds:
            raise UsageError(f"--input {item}: input {name!r} is given twice")
        path = Path(file_name)
        if not path.is_file():
            raise UsageError(f"--input {item}: no such file {path}")
        from edgekit.runtimes.limits import load_npy

        feeds[name] = load_npy(path, f"--input {item}")  # header checked before anything is allocated
    return feeds


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    inputs: List[str] = typer.Option(..., "--input", "-i", help="x.npy, or NAME=x.npy for each input."),
    out_dir: Path = typer.Option(Path("edgekit-outputs"), "--out", "-o", help="Directory for <output>.npy files."),
    threads: int = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: the runtime's)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Run a model on .npy inputs and write each output as OUT/<name>.npy."""
    import edgekit.runtimes as rt

    session = rt.load(model, threads=threads)
    feeds = read_inputs(inputs, tuple(spec.name for spec in session.inputs))
    results = session.run(feeds)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create the directory ({exc.strerror})") from exc
    summary = []
    for name, value in results.items():
        target = out_dir / f"{name.replace('/', '_')}.npy"
        _save_npy(target, value)
        summary.append({"name": name, "file": str(target), "shape": list(value.shape), "dtype": str(value.dtype)})

    def render() -> None:
        out.print(table(None, ["output", "shape", "dtype", "file"],
                        [[s["name"], tuple(s["shape"]), s["dtype"], s["file"]] for s in summary]))

    emit({"outputs": summary}, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
