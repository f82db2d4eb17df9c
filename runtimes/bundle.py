"""The bundle: one directory a device app ships, ``manifest.json`` plus the model files.

The manifest lists every file with its sha256; :func:`read_bundle` verifies them. :class:`~edgekit.runtimes.bundle_writer.BundleWriter`
(the write side, in its own module) stages everything in a temporary sibling directory and swaps it into place only when complete
(runtimes/swap.py: one atomic exchange, so ``out`` holds the old or the new bundle at every instant a
kill can hit), under a lock per ``out`` (a second concurrent writer is refused); leftovers of a killed
export are removed (or an old bundle put back) by the next writer.

A bundle stays inside itself: every path in a manifest is a relative POSIX name inside the directory
(no ``..``, no absolute path, no backslash or drive), symbolic links are refused, and a file in the
directory that the manifest does not list (an ONNX model's external data included) is refused too.
:class:`BundleWriter` replaces only an edgekit bundle or an empty directory unless ``force=True``.

Example:
    >>> import tempfile, pathlib
    >>> from edgekit.runtimes.bundle_writer import BundleWriter
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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import BundleError
from .spec import TensorSpec, specs_from_json, specs_to_json

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "Graph",
    "Manifest",
    "Bundle",
    "read_bundle",
    "bundle_member",
    "opened_files",
    "sha256_file",
    "MAX_MANIFEST_BYTES",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is metadata; anything bigger is refused before it is read
_DRIVE = re.compile(r"^[A-Za-z]:")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_member_name(name: Any) -> bool:
    """A plain relative POSIX name: no absolute path, drive, backslash, NUL, or '', '.', '..' component."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name or _DRIVE.match(name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _check_member_name(name: Any, field: str, where: str) -> str:
    if not _is_member_name(name):
        raise BundleError(
            f"{where}: {field} {name!r} must be a file name inside the bundle "
            "(a relative path without '..', '.', a leading '/', a backslash or a drive)"
        )
    return name


def _refuse_irregular(root: str | Path, rel: str, kind: str) -> None:
    what = "a symbolic link" if kind == "link" else "not a regular file"
    raise BundleError(f"{root}: {rel!r} is {what} (a bundle holds regular files only)")


def bundle_member(root: str | Path, name: Any, field: str = "file") -> Path:
    """The path of file ``name`` of the bundle at ``root``; BundleError unless it stays inside it.

    ``name`` must be a relative POSIX name, and no component on the way (the file included) may be a
    symbolic link, so the path cannot leave ``root``.

    Example:
        >>> bundle_member("out", "tokenizer/tokenizer.json").as_posix()
        'out/tokenizer/tokenizer.json'
        >>> bundle_member("out", "../x.onnx", "graphs.model.file")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.BundleError: out: graphs.model.file '../x.onnx' must be a file name inside the bundle (a relative path without '..', '.', a leading '/', a backslash or a drive)
    """
    root = Path(root)
    _check_member_name(name, field, str(root))
    path = root
    for part in name.split("/"):
        path = path / part
        if path.is_symlink():
            _refuse_irregular(root, path.relative_to(root).as_posix(), "link")
    if path.exists() and not path.resolve().is_relative_to(root.resolve()):  # belt and braces
        raise BundleError(f"{root}: {field} {name!r} resolves outside the bundle")
    return path


def opened_files(manifest: "Manifest") -> dict[str, Any]:
    """Manifest field -> file name of every file a session opens: graph files and tokenizer files.

    Example:
        >>> from edgekit.runtimes.spec import TensorSpec
        >>> graph = Graph("model.onnx", (TensorSpec("x", (1,)),), (TensorSpec("y", (1,)),))
        >>> opened_files(Manifest("host", "onnx", "fp32", {"model": graph}, extra={"tokenizer": {"files": ["t.json"]}}))
        {'graphs.model.file': 'model.onnx', 'extra.tokenizer.files[0]': 't.json'}
    """
    fields: dict[str, Any] = {f"graphs.{name}.file": graph.file for name, graph in manifest.graphs.items()}
    fields.update({f"formats.{fmt}.graphs.{name}.file": graph.file
                   for fmt, entry in manifest.formats.items() for name, graph in entry["graphs"].items()})
    tokenizer = manifest.extra.get("tokenizer") if isinstance(manifest.extra, Mapping) else None
    files = tokenizer.get("files", []) if isinstance(tokenizer, Mapping) else []
    fields.update({f"extra.tokenizer.files[{i}]": name for i, name in enumerate(files if isinstance(files, list) else [files])})
    return fields


def _check_names(manifest: "Manifest", where: str) -> None:
    """Every path the manifest names is a file name inside the bundle; every ``files`` entry has a sha256."""
    for field_name, name in opened_files(manifest).items():
        _check_member_name(name, field_name, where)
    for name, info in manifest.files.items():
        _check_member_name(name, "files key", where)
        if not isinstance(info, Mapping) or not isinstance(info.get("sha256"), str):
            raise BundleError(f"{where}: files[{name!r}] must be an object with a 'sha256' string")


def _check_listed(manifest: "Manifest", where: str) -> None:
    """Every file a session opens is listed in ``files`` (so it is verified)."""
    for field_name, name in opened_files(manifest).items():
        if name not in manifest.files:
            raise BundleError(f"{where}: {field_name} {name!r} is not listed in 'files'")


def _scan(root: Path, descend: Callable[[str], bool] = lambda rel: True, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(relative POSIX name, kind) of everything under ``root``, sorted, lazily; kind is "file", "dir",
    "link" (a symbolic link, never followed) or "other" (fifo, socket, device). Folders for which
    ``descend(name)`` is false are listed but not entered."""
    with os.scandir(root) as entries:
        ordered = sorted(entries, key=lambda entry: entry.name)
    for entry in ordered:
        rel = prefix + entry.name
        if entry.is_symlink():
            yield rel, "link"
        elif entry.is_dir(follow_symlinks=False):
            yield rel, "dir"
            if descend(rel):
                yield from _scan(Path(entry.path), descend, rel + "/")
        elif entry.is_file(follow_symlinks=False):
            yield rel, "file"
        else:
            yield rel, "other"


def _read_manifest_json(manifest_path: Path) -> Any:
    """The parsed ``manifest.json``: refused when it is a symbolic link or larger than MAX_MANIFEST_BYTES."""
    if manifest_path.is_symlink():
        raise BundleError(f"{manifest_path} is a symbolic link (a bundle holds regular files only)")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{manifest_path}: {size / (1 << 20):.1f} MiB is larger than the {MAX_MANIFEST_BYTES >> 20} MiB a manifest may be"
        )
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: invalid JSON ({exc})") from exc


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
    ``extra`` holds model-family data (subnet config, generation config, ...). ``example_sizes`` gives
    each named dynamic axis the size the model was exported and timed at (``{"batch": 1, "height": 224}``),
    so bench and profile feed realistic inputs; axes it does not name take 1.
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
    example_sizes: Mapping[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # --format all: the same model in other formats, format -> {"graphs": {name: Graph}, "precision", "validation",
    # "latency", "toolchain", "provenance"}; ``format`` / ``graphs`` above are the first one (see for_format)
    formats: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def format_names(self) -> tuple[str, ...]:
        """Every format this bundle holds, its main one first."""
        return (self.format, *self.formats)

    def for_format(self, fmt: str) -> "Manifest":
        """This manifest as seen by a session of format ``fmt`` (its graphs, precision, validation, latency)."""
        if fmt == self.format:
            return self
        if fmt not in self.formats:
            raise BundleError(f"bundle has no {fmt!r} model; it has {list(self.format_names)}")
        entry = self.formats[fmt]
        return replace(self, format=fmt, graphs=entry["graphs"], precision=str(entry.get("precision", self.precision)),
                       validation=entry.get("validation", {}), latency=tuple(entry.get("latency", ())),
                       toolchain=entry.get("toolchain", {}), provenance=entry.get("provenance", {}), formats={})

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
            "example_sizes": dict(self.example_sizes),
            **({"formats": {fmt: {**entry, "graphs": {n: g.to_json() for n, g in entry["graphs"].items()}}
                            for fmt, entry in self.formats.items()}} if self.formats else {}),
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
        for key in ("provenance", "validation", "toolchain", "extra"):
            if not isinstance(data.get(key, {}), dict):
                raise BundleError(f"{where}: field {key!r} must be an object")
        latency = data.get("latency", [])
        if not isinstance(latency, list) or not all(isinstance(item, dict) for item in latency):
            raise BundleError(f"{where}: field 'latency' must be a list of objects")
        graphs = {name: Graph.from_json(g, f"{where}: graphs.{name}") for name, g in data["graphs"].items()}
        manifest = cls(
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
            example_sizes=_example_sizes(data.get("example_sizes", {}), where),
            schema_version=version,
            formats=_other_formats(data.get("formats", {}), where),
        )
        _check_names(manifest, where)
        return manifest


def _other_formats(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(e, dict) and isinstance(e.get("graphs"), dict) and e["graphs"]
                                              for e in value.values()):
        raise BundleError(f"{where}: field 'formats' must map format names to objects with non-empty 'graphs'")
    return {str(fmt): {**entry, "graphs": {name: Graph.from_json(g, f"{where}: formats.{fmt}.graphs.{name}")
                                           for name, g in entry["graphs"].items()}}
            for fmt, entry in value.items()}


def _example_sizes(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 20 for k, v in value.items()
    ):
        raise BundleError(f"{where}: field 'example_sizes' must map axis names to sizes 1..{1 << 20}, got {value!r}")
    return dict(value)


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk: its directory and its (verified) manifest."""

    path: Path
    manifest: Manifest

    def file(self, graph: str = "model") -> Path:
        return bundle_member(self.path, self.manifest.graph(graph).file, f"graphs.{graph}.file")


def read_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle's manifest and check that every path in it stays inside the bundle; with ``verify``
    also check every listed file exists with its sha256 and that the bundle holds no unlisted file."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    if not manifest_path.is_file() and not manifest_path.is_symlink():
        raise BundleError(f"{path}: no {MANIFEST_NAME} (not an edgekit bundle)")
    manifest = Manifest.from_json(_read_manifest_json(manifest_path), str(manifest_path))
    _check_listed(manifest, str(manifest_path))
    for name in manifest.files:
        bundle_member(path, name, "files key")
    if verify:
        _check_no_unlisted(path, manifest)
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


def _check_no_unlisted(path: Path, manifest: Manifest) -> None:
    """Every file in the bundle directory is the manifest or listed in it (so it is verified)."""
    for rel, kind in _scan(path):
        if kind in ("link", "other"):
            _refuse_irregular(path, rel, kind)
        if kind == "file" and rel != MANIFEST_NAME and rel not in manifest.files:
            raise BundleError(f"{path}: file {rel!r} is not listed in the manifest (unverified files are refused)")
