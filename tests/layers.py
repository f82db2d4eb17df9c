"""The import contract of edgekit's layers, checked on the source text (docs/ARCHITECTURE.md).

Every module of the package belongs to one layer; a module may import its own layer and the layers
below it, never one above. Every import counts: module level, inside a function, under
``TYPE_CHECKING``, ``importlib.import_module("...")``, ``require("...")`` and a string constant that
names an edgekit module (``"edgekit.models.slm.export:export_family"``: a registry that imports by
name). On top of that: no import cycle between modules (lazy imports included), the layers of one rank
(``cli`` and ``tools``) do not import each other, and the device layers do not import the heavy
libraries a device app must not need.

Run ``python -m tests.layers`` for the violations of the working tree, one per line.

Example:
    >>> layer_of("edgekit.targets.store").name, layer_of("edgekit").name
    ('targets', 'base')
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Layer:
    """A set of modules (each name covers its sub-modules) at one rank; higher ranks sit above."""

    name: str
    rank: int
    modules: tuple[str, ...]
    why: str

    def owns(self, module: str) -> bool:
        return any(_covers(name, module) for name in self.modules)


def _covers(name: str, module: str) -> bool:
    """Whether layer entry ``name`` covers ``module``: itself and its sub-modules, except that the root
    package ``edgekit`` stands for edgekit/__init__.py alone."""
    return module == name or (name != "edgekit" and module.startswith(name + "."))


# Lowest first. Layers of the same rank are independent: neither may import the other.
LAYERS: tuple[Layer, ...] = (
    Layer("base", 0, ("edgekit", "edgekit._version"), "the version constant; importing edgekit stays cheap"),
    Layer("runtimes", 1, ("edgekit.runtimes",), "what a device app embeds: bundles, specs, sessions, formats"),
    Layer("targets", 2, ("edgekit.targets",), "device profiles, latency models and store, profiler, agent"),
    Layer("exporters", 3, ("edgekit.exporters",), "torch -> model files, validation, precision variants"),
    Layer("models", 4, ("edgekit.models", "edgekit.calibration_zoo"), "model families, their data and weights"),
    Layer("search", 5, ("edgekit.search", "edgekit.profiling"), "selection under a budget; measuring for it"),
    Layer("pipeline", 6, ("edgekit.pipeline", "edgekit.export_steps", "edgekit.compress", "edgekit.measured_select",
                           "edgekit.lm_select"),
          "the export chain that writes a bundle; compression and measured selection that export through it"),
    Layer("cli", 7, ("edgekit.cli", "edgekit.__main__"), "the command line"),
    Layer("tools", 7, ("edgekit.tools",), "offline build scripts (python -m edgekit.tools.NAME)"),
)

# Third-party packages a device layer must never import (the device installs edgekit[ort] only).
FORBIDDEN: Mapping[str, tuple[str, ...]] = {
    "runtimes": ("torch", "onnx", "onnxscript", "transformers", "typer", "rich", "yaml"),
    "targets": ("torch", "onnx", "onnxscript", "transformers", "typer", "rich"),
}


@dataclass(frozen=True)
class Import:
    """One import found in the source: who imports what, where, and how."""

    importer: str
    imported: str  # an edgekit module, or a top-level third-party package name
    file: str  # relative to the root
    line: int
    how: str  # "import", "lazy import", "import by name", "named reference"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Violation:
    rule: str  # "upward import", "same-rank import", "forbidden import", "import cycle", "no layer"
    key: tuple[str, ...]  # (importer, imported) for an edge; the sorted modules of a cycle; (module,)
    message: str


def layer_of(module: str) -> Layer | None:
    """The layer that owns ``module`` (the longest matching name wins), or None.

    Example:
        >>> layer_of("edgekit.cli.export").name, layer_of("edgekit.nowhere")
        ('cli', None)
    """
    matches = [(len(name), layer) for layer in LAYERS for name in layer.modules if _covers(name, module)]
    return max(matches, key=lambda match: match[0])[1] if matches else None


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name -> folder, from pyproject.toml's ``[tool.setuptools.package-dir]``."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: root / folder for name, folder in data["tool"]["setuptools"]["package-dir"].items()}


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name, with its file."""
    found: dict[str, Path] = {}
    for package, folder in sorted(package_dirs(root).items(), key=lambda item: -len(item[0])):
        for file in sorted(folder.rglob("*.py")):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.setdefault(".".join([package, *parts]), file)
    return found


def _known(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in known else None


def _string_targets(node: ast.AST) -> Iterator[tuple[str, str]]:
    """Modules named in strings: import_module("x") and require("x", ...) calls import them ("import by
    name"); a constant "edgekit.x" or "edgekit.x:attr" in a table names one ("named reference")."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in ("import_module", "require") and isinstance(node.args[0].value, str):
            yield node.args[0].value, "import by name"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value.split(":", 1)[0]
        if name.startswith("edgekit.") and name.replace(".", "").replace("_", "").isalnum():
            yield name, "named reference"


def imports_of(module: str, file: Path, known: Mapping[str, Path], root: Path) -> list[Import]:
    """Every import in ``file`` (module ``module``), resolved to edgekit modules or third-party packages."""
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    rel = file.relative_to(root).as_posix()
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    in_function = {
        id(inner)
        for outer in ast.walk(tree) if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for inner in ast.walk(outer)
    }
    found: list[Import] = []

    def add(name: str, node: ast.AST, how: str) -> None:
        if name == "edgekit" or name.startswith("edgekit."):
            target = _known(name, known)
            if target and target != module:
                found.append(Import(module, target, rel, node.lineno, how))
        else:
            found.append(Import(module, name.split(".")[0], rel, node.lineno, how))

    for node in ast.walk(tree):
        how = "lazy import" if id(node) in in_function else "import"
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, how)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "__future__":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in known else source, node, how)
        else:
            for name, how in _string_targets(node):
                add(name, node, how)
    return list(dict.fromkeys(found))  # `from x import a, b` is one import of x


def _declaration(imp: Import) -> bool:
    """A named reference to a module above the holder: a record that names its plug-in (runtimes/formats.py
    names each format's exporter), imported by the layer that owns it, never by the holder."""
    source, target = layer_of(imp.importer), layer_of(imp.imported)
    return imp.how == "named reference" and source is not None and target is not None and target.rank > source.rank


def all_imports(root: Path = ROOT) -> list[Import]:
    """Every import of the tree at ``root``, declarations (see :func:`_declaration`) left out."""
    known = modules(root)
    found = (imp for module, file in known.items() for imp in imports_of(module, file, known, root))
    return [imp for imp in found if not _declaration(imp)]


def _edge_violations(imports: Iterable[Import], known: Mapping[str, Path], root: Path) -> Iterator[Violation]:
    for module, file in known.items():
        if layer_of(module) is None:
            where = file.relative_to(root).as_posix()
            yield Violation("no layer", (module,), f"{where}: module {module} is in no layer: add it to LAYERS in "
                                                   "tests/layers.py and to docs/ARCHITECTURE.md")
    for imp in imports:
        source = layer_of(imp.importer)
        if source is None:
            continue
        if imp.imported not in known:
            banned = FORBIDDEN.get(source.name, ())
            if imp.imported in banned:
                yield Violation("forbidden import", (imp.importer, imp.imported),
                                f"{imp.where}: {imp.importer} imports {imp.imported} ({imp.how}): forbidden import: "
                                f"layer '{source.name}' must not import {', '.join(banned)}")
            continue
        target = layer_of(imp.imported)
        if target is None or target is source:
            continue
        if target.rank > source.rank:
            yield Violation("upward import", (imp.importer, imp.imported),
                            f"{imp.where}: {imp.importer} imports {imp.imported} ({imp.how}): upward import: layer "
                            f"'{source.name}' may not import layer '{target.name}' above it")
        elif target.rank == source.rank:
            yield Violation("same-rank import", (imp.importer, imp.imported),
                            f"{imp.where}: {imp.importer} imports {imp.imported} ({imp.how}): same-rank import: "
                            f"layers '{source.name}' and '{target.name}' are independent")


def _cycles(imports: Iterable[Import]) -> Iterator[Violation]:
    """Each distinct shortest cycle through a module of a strongly connected group, as one violation."""
    graph: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        if imp.imported.startswith("edgekit"):
            graph[imp.importer].setdefault(imp.imported, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the graph is a few hundred edges
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    for group in groups:
        members = set(group)
        seen: set[tuple[str, ...]] = set()
        for start in group:  # the shortest cycle through each member, each set of modules once
            path = _path_back(graph, start, members)
            key = tuple(sorted(imp.importer for imp in path))
            if key not in seen:
                seen.add(key)
                steps = " -> ".join(f"{imp.importer} ({imp.where}, {imp.how})" for imp in path)
                yield Violation("import cycle", key, f"{path[0].where}: import cycle: {steps} -> {start}")


def _path_back(graph: Mapping[str, Mapping[str, Import]], start: str, members: set[str]) -> list[Import]:
    """The shortest chain of imports from ``start`` back to itself inside ``members`` (breadth first)."""
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w, imp in sorted(graph.get(v, {}).items()):
                if w not in members or w in came:
                    continue
                came[w] = imp
                if w == start:
                    chain = [imp]
                    while chain[0].importer != start:
                        chain.insert(0, came[chain[0].importer])
                    return chain
                following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a cycle group but no cycle leads back to it")


def check(root: Path = ROOT) -> list[Violation]:
    """Every violation of the contract in the tree at ``root`` (empty when it holds).

    Example:
        >>> [v.message for v in check() if v.rule == "no layer"]
        []
    """
    known = modules(root)
    imports = all_imports(root)
    return [*_edge_violations(imports, known, root), *_cycles(imports)]


def layer_table() -> str:
    """The Markdown table of the layers (docs/ARCHITECTURE.md carries it verbatim; a test compares).

    Example:
        >>> layer_table().splitlines()[0]
        '| rank | layer | modules | holds | never imports, besides the layers above |'
    """
    rows = ["| rank | layer | modules | holds | never imports, besides the layers above |", "| --- | --- | --- | --- | --- |"]
    for layer in sorted(LAYERS, key=lambda item: -item.rank):
        peers = [f"`{m}`" for other in LAYERS if other.rank == layer.rank and other is not layer for m in other.modules]
        never = ", ".join(peers + list(FORBIDDEN.get(layer.name, ()))) or "-"
        names = ", ".join(f"`{m}`" for m in layer.modules)
        rows.append(f"| {layer.rank} | {layer.name} | {names} | {layer.why} | {never} |")
    return "\n".join(rows)


if __name__ == "__main__":
    found = check()
    print("\n".join(v.message for v in found) or "import contract holds")
    raise SystemExit(1 if found else 0)
