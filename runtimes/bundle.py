"""The bundle: one directory a device app ships, ``manifest.json`` plus the model files.

The manifest lists every file with its sha256; :func:`read_bundle` verifies them. :class:`BundleWriter`
stages everything in a temporary sibling directory and swaps it into place only when complete, so an
interrupted export leaves no half-written bundle and never damages an existing one.

Example:
    >>> import tempfile, pathlib
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "bundle"
    >>> with BundleWriter(out) as stage:
    ...     _ = (stage.path / "model.onnx").write_bytes(b"not really onnx")
    ...     graph = Graph("model.onnx", (TensorSpec("x", ("batch", 3)),), (TensorSpec("y", ("batch", 2)),))
    ...     _ = stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": graph}))
    >>> read_bundle(out).manifest.files["model.onnx"]["bytes"]
    15
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import BundleError
from .spec import TensorSpec, specs_from_json, specs_to_json

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "Graph",
    "Manifest",
    "Bundle",
    "BundleWriter",
    "read_bundle",
    "sha256_file",
    "atomic_write_text",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a torn file).

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Graph:
    """One model file of a bundle and its I/O specs."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "inputs": specs_to_json(self.inputs), "outputs": specs_to_json(self.outputs)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> "Graph":
        if not isinstance(data, Mapping) or "file" not in data:
            raise BundleError(f"{where}: expected an object with 'file', 'inputs', 'outputs'")
        return cls(
            str(data["file"]),
            specs_from_json(data.get("inputs"), f"{where}.inputs"),
            specs_from_json(data.get("outputs"), f"{where}.outputs"),
        )


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds and where it came from. ``files`` is filled in by :class:`BundleWriter`.

    ``latency`` entries are dicts that always carry ``source`` ("measured" or "modeled") and ``ms``.
    ``extra`` holds model-family data (subnet config, generation config, ...).
    """

    target: str
    format: str
    precision: str
    graphs: Mapping[str, Graph]
    task: str = "generic"
    name: str = "model"
    edgekit_version: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    latency: tuple[Mapping[str, Any], ...] = ()
    toolchain: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def graph(self, name: str = "model") -> Graph:
        if name not in self.graphs:
            raise BundleError(f"bundle has no graph {name!r}; it has {sorted(self.graphs)}")
        return self.graphs[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "edgekit_version": self.edgekit_version,
            "name": self.name,
            "task": self.task,
            "target": self.target,
            "format": self.format,
            "precision": self.precision,
            "graphs": {name: graph.to_json() for name, graph in self.graphs.items()},
            "files": {name: dict(info) for name, info in self.files.items()},
            "provenance": dict(self.provenance),
            "validation": dict(self.validation),
            "latency": [dict(item) for item in self.latency],
            "toolchain": dict(self.toolchain),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Manifest":
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(f"{where}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
        for key in ("target", "format", "precision", "graphs", "files"):
            if key not in data:
                raise BundleError(f"{where}: missing field {key!r}")
        if not isinstance(data["graphs"], dict) or not data["graphs"]:
            raise BundleError(f"{where}: field 'graphs' must be a non-empty object")
        if not isinstance(data["files"], dict):
            raise BundleError(f"{where}: field 'files' must be an object")
        graphs = {name: Graph.from_json(g, f"{where}: graphs.{name}") for name, g in data["graphs"].items()}
        return cls(
            target=str(data["target"]),
            format=str(data["format"]),
            precision=str(data["precision"]),
            graphs=graphs,
            task=str(data.get("task", "generic")),
            name=str(data.get("name", "model")),
            edgekit_version=str(data.get("edgekit_version", "")),
            provenance=data.get("provenance", {}),
            validation=data.get("validation", {}),
            latency=tuple(data.get("latency", ())),
            toolchain=data.get("toolchain", {}),
            extra=data.get("extra", {}),
            files=data["files"],
            schema_version=version,
        )


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk: its directory and its (verified) manifest."""

    path: Path
    manifest: Manifest

    def file(self, graph: str = "model") -> Path:
        return self.path / self.manifest.graph(graph).file


def read_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle's manifest; with ``verify`` check every listed file exists with its sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME} (not an edgekit bundle)")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: invalid JSON ({exc})") from exc
    manifest = Manifest.from_json(data, str(manifest_path))
    for graph_name, graph in manifest.graphs.items():
        if graph.file not in manifest.files:
            raise BundleError(f"{manifest_path}: graph {graph_name!r} file {graph.file!r} is not listed in 'files'")
    if verify:
        for name, info in manifest.files.items():
            file_path = path / name
            if not file_path.is_file():
                raise BundleError(f"{path}: file {name!r} listed in the manifest is missing")
            actual = sha256_file(file_path)
            if actual != info.get("sha256"):
                raise BundleError(
                    f"{file_path}: sha256 mismatch (manifest {str(info.get('sha256'))[:12]}..., "
                    f"file {actual[:12]}...): the file was modified or truncated"
                )
    return Bundle(path, manifest)


class BundleWriter:
    """Stage a bundle in a temporary sibling directory; ``commit`` hashes files and swaps it in.

    Leaving the ``with`` block without ``commit`` (an error, Ctrl-C) removes the staging directory
    and leaves any existing bundle at ``out`` untouched.
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path: Path | None = None
        self.committed: Manifest | None = None

    def __enter__(self) -> "BundleWriter":
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".staging", dir=parent))
        except OSError as exc:
            raise BundleError(f"{self.out}: cannot write the output directory ({exc.strerror})") from exc
        if self.out.exists() and not self.out.is_dir():
            self._cleanup()
            raise BundleError(f"{self.out}: exists and is not a directory")
        return self

    def commit(self, manifest: Manifest) -> Manifest:
        """Hash every staged file into the manifest, write it, and move the bundle to ``out``."""
        assert self.path is not None, "commit() outside the with block"
        files = {}
        for file_path in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = file_path.relative_to(self.path).as_posix()
            files[rel] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
        for graph_name, graph in manifest.graphs.items():
            if graph.file not in files:
                raise BundleError(f"graph {graph_name!r}: file {graph.file!r} was not written to the bundle")
        manifest = replace(manifest, files=files)
        atomic_write_text(self.path / MANIFEST_NAME, json.dumps(manifest.to_json(), indent=2) + "\n")
        backup = None
        os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        if self.out.exists():
            backup = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, backup)
        os.replace(self.path, self.out)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self.path = None
        self.committed = manifest
        return manifest

    def _cleanup(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def __exit__(self, *exc_info) -> None:
        self._cleanup()
