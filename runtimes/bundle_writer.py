"""The write side of a bundle: :class:`BundleWriter` stages files in a sibling directory, hashes them into
the manifest and swaps the bundle into place (runtimes/swap.py), replacing only an edgekit bundle or an
empty directory unless ``force=True``. Kept apart from :mod:`edgekit.runtimes.bundle` so that a device
app that only reads bundles never imports it.

Example:
    >>> import tempfile, pathlib
    >>> from edgekit.runtimes.bundle import Graph, Manifest, read_bundle
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "bundle"
    >>> with BundleWriter(out) as stage:
    ...     _ = (stage.path / "model.onnx").write_bytes(b"not really onnx")
    ...     graph = Graph("model.onnx", (TensorSpec("x", ("batch", 3)),), (TensorSpec("y", ("batch", 2)),))
    ...     _ = stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": graph}))
    >>> read_bundle(out).manifest.format
    'onnx'
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from .bundle import MANIFEST_NAME, Manifest, _check_listed, _check_names, _read_manifest_json, _refuse_irregular, _scan, sha256_file
from .errors import BundleError
from .files import atomic_write_text, umask
from .swap import STAGING_SUFFIX, OutLock, recover, remove_tree, swap_in

__all__ = ["BundleWriter"]


def _owned_names(directory: Path) -> set[str]:
    """Names an edgekit bundle at ``directory`` holds (manifest, listed files, their folders); empty if
    ``directory`` has no manifest.json that edgekit wrote (parseable, with schema_version and files)."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return set()
    try:
        data = _read_manifest_json(manifest_path)
    except (BundleError, OSError):
        return set()
    if not isinstance(data, dict) or "schema_version" not in data or not isinstance(data.get("files"), dict):
        return set()
    owned = {MANIFEST_NAME, *data["files"]}
    return owned | {parent for name in owned for parent in _parents(name)}


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _strays(directory: Path, owned: set[str], limit: int = 4) -> list[str]:
    """Up to ``limit`` entries of ``directory`` outside ``owned`` (see _owned_names); [] for an edgekit
    bundle or an empty directory. Folders that are not owned are named, not entered."""
    strays = []
    for rel, kind in _scan(directory, descend=lambda rel: rel in owned):
        if rel in owned and kind in ("file", "dir"):
            continue
        strays.append(rel + "/" if kind == "dir" else rel)
        if len(strays) >= limit:
            break
    return strays


class BundleWriter:
    """Stage a bundle in a temporary sibling directory; ``commit`` hashes files and swaps it in.

    Leaving the ``with`` block without ``commit`` (an error, Ctrl-C) removes the staging directory
    and leaves any existing bundle at ``out`` untouched. Entering takes the lock on ``out`` (another
    process writing it: BundleError) and cleans what killed exports left beside it. ``out`` may already be an edgekit bundle or an
    empty directory; anything else is refused on entering the block (before any work), unless
    ``force`` is true. The current directory and its parents are refused even then, unless a bundle.
    """

    def __init__(self, out: str | Path, *, force: bool = False) -> None:
        self.out = Path(out)
        self.force = force
        self._dest = Path(os.path.abspath(self.out))  # "." and ".." have no name to stage beside
        self.path: Path | None = None
        self._lock: OutLock | None = None
        self.committed: Manifest | None = None

    def __enter__(self) -> "BundleWriter":
        self.check_destination()
        parent = self._dest.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._lock = OutLock.acquire(self._dest, str(self.out))
            recover(self._dest)  # leftovers of an earlier export killed mid-way (we hold the lock)
            self.check_destination()  # recovery may have put an old bundle back
            import tempfile

            self.path = Path(tempfile.mkdtemp(prefix=f".{self._dest.name}.", suffix=STAGING_SUFFIX, dir=parent))
        except OSError as exc:
            self._release()
            raise BundleError(f"{self.out}: cannot write the output directory ({exc.strerror})") from exc
        except BaseException:
            self._release()
            raise
        return self

    def check_destination(self) -> None:
        """Refuse to replace anything but an edgekit bundle or an empty directory (see the class doc).

        Entering the ``with`` block runs it; call it earlier to refuse before slow work that precedes it.
        """
        dest = self._dest
        if dest.is_symlink():  # replacing it would replace the link only; still not ours to replace
            self._refuse_unless_forced("it is a symbolic link")
            return
        if not dest.exists():
            return
        if not dest.is_dir():
            raise BundleError(f"{self.out}: exists and is not a directory")
        owned = _owned_names(dest)
        strays = _strays(dest, owned)
        if (strays or not owned) and (dest.resolve() == Path.cwd() or dest.resolve() in Path.cwd().parents):
            raise BundleError(
                f"{self.out}: is the current directory or a parent of it and is not an edgekit bundle; "
                "refusing to replace it, even with --force (choose another --out)"
            )
        if strays:
            self._refuse_unless_forced("it holds " + ", ".join(strays[:3]) + (", ..." if len(strays) > 3 else ""))

    def _refuse_unless_forced(self, holds: str) -> None:
        if not self.force:
            raise BundleError(
                f"{self.out}: exists and is not an edgekit bundle ({holds}); refusing to replace it "
                "(pass --force to replace it anyway)"
            )

    def _staged_files(self) -> dict[str, dict[str, Any]]:
        """sha256 and size of every staged file; a bundle holds regular files only."""
        assert self.path is not None, "commit() outside the with block"
        files = {}
        for rel, kind in _scan(self.path):
            if kind in ("link", "other"):
                _refuse_irregular(self.out, rel, kind)
            if kind == "file":
                file_path = self.path / rel
                files[rel] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
        return files

    def commit(self, manifest: Manifest) -> Manifest:
        """Hash every staged file into the manifest, write it, and move the bundle to ``out``."""
        assert self.path is not None, "commit() outside the with block"
        files = self._staged_files()
        for graph_name, graph in manifest.graphs.items():
            if graph.file not in files:
                raise BundleError(f"graph {graph_name!r}: file {graph.file!r} was not written to the bundle")
        manifest = replace(manifest, files=files)
        _check_names(manifest, str(self.out))
        _check_listed(manifest, str(self.out))
        atomic_write_text(self.path / MANIFEST_NAME, json.dumps(manifest.to_json(), indent=2) + "\n")
        os.chmod(self.path, 0o777 & ~umask())  # mkdtemp makes it private (0700)
        self.check_destination()  # the export took a while: the check holds at the swap too
        self._swap_in()
        self.committed = manifest
        return manifest

    def _swap_in(self) -> None:
        """Put the staged bundle at ``out`` so that ``out`` always holds a complete bundle (see swap_in)."""
        assert self.path is not None
        staged, self.path = self.path, None
        swap_in(staged, self._dest)

    def _release(self) -> None:
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def _cleanup(self) -> None:
        if self.path is not None:
            remove_tree(self.path)
            self.path = None

    def __exit__(self, *exc_info) -> None:
        try:
            self._cleanup()
        finally:
            self._release()
