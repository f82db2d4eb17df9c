"""The import contract (tests/layers.py, docs/ARCHITECTURE.md) holds on the tree, and the check catches
each kind of violation with a message naming the file, the line and the rule."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests import layers

ROOT = Path(__file__).resolve().parents[1]

# Violations being removed by work in progress: key -> who removes it. Empty when the work has landed;
# an entry that no longer occurs fails the test, so the list only shrinks.
KNOWN_VIOLATIONS: dict[tuple[str, ...], str] = {}


def test_the_tree_keeps_the_import_contract():
    found = layers.check(ROOT)
    unexpected = [v.message for v in found if v.key not in KNOWN_VIOLATIONS]
    assert not unexpected, "\n".join(unexpected)
    stale = set(KNOWN_VIOLATIONS) - {v.key for v in found}
    assert not stale, f"fixed: remove from KNOWN_VIOLATIONS: {sorted(stale)}"


def test_every_layer_names_real_modules():
    known = layers.modules(ROOT)
    for layer in layers.LAYERS:
        for name in layer.modules:
            assert any(layers._covers(name, module) for module in known), f"{layer.name}: {name} matches no module"


def test_architecture_doc_carries_the_layer_table():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert layers.layer_table() in doc, "docs/ARCHITECTURE.md: paste tests/layers.py's layer_table() output"


def _copy_tree(dest: Path) -> Path:
    """The package sources and pyproject.toml, without data files."""
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for folder in ("edgekit", "exporters", "runtimes", "targets"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "weights", "*.toml"))
    return dest


def _plant(path: Path, code: str) -> int:
    """Append ``code`` to ``path``; returns the line number of its first line."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text + textwrap.dedent(code), encoding="utf-8")
    return text.count("\n") + 1


def _new_upward(found: list[layers.Violation]) -> list[layers.Violation]:
    """The upward imports of ``found`` that the real tree does not have (a planted import also closes cycles)."""
    before = {v.key for v in layers.check(ROOT)}
    return [v for v in found if v.key not in before and v.rule == "upward import"]


def test_a_planted_lazy_upward_import_fails_naming_file_line_and_rule(tmp_path):
    tree = _copy_tree(tmp_path)
    line = _plant(tree / "targets" / "store.py", """
        def _planted():
            from edgekit.pipeline import export_bundle
            return export_bundle
        """)
    (violation,) = _new_upward(layers.check(tree))
    assert violation.message.startswith(f"targets/store.py:{line + 2}: edgekit.targets.store imports edgekit.pipeline")
    assert "(lazy import): upward import: layer 'targets' may not import layer 'pipeline' above it" in violation.message


def test_the_library_never_imports_the_cli(tmp_path):
    tree = _copy_tree(tmp_path)
    line = _plant(tree / "edgekit" / "pipeline.py", "\nfrom edgekit.cli.common import out\n")
    (violation,) = _new_upward(layers.check(tree))
    assert violation.message.startswith(f"edgekit/pipeline.py:{line + 1}: edgekit.pipeline imports edgekit.cli.common")
    assert "layer 'pipeline' may not import layer 'cli' above it" in violation.message


# --- each rule on a small synthetic tree ---------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"edgekit" = "edgekit"\n"edgekit.runtimes" = "runtimes"\n', encoding="utf-8"
    )
    base = {"edgekit/__init__.py": "", "runtimes/__init__.py": "", "edgekit/pipeline.py": "", "edgekit/cli/__init__.py": "",
            "edgekit/tools/__init__.py": ""}
    for name, text in {**base, **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def _messages(tree: Path) -> list[str]:
    return [v.message for v in layers.check(tree)]


def test_a_lazy_cycle_is_found_with_each_step(tmp_path):
    tree = _tree(tmp_path, {
        "runtimes/a.py": "from .b import g\n",
        "runtimes/b.py": "def g():\n    from edgekit.runtimes.a import f\n",
    })
    assert _messages(tree) == [
        "runtimes/a.py:1: import cycle: edgekit.runtimes.a (runtimes/a.py:1, import) -> "
        "edgekit.runtimes.b (runtimes/b.py:2, lazy import) -> edgekit.runtimes.a"
    ]


def test_a_registry_entry_that_names_a_module_counts_as_an_import(tmp_path):
    tree = _tree(tmp_path, {
        "runtimes/__init__.py": '_LOADERS = {"lm": ("edgekit.runtimes.lm", "open_bundle")}\n',
        "runtimes/lm.py": "from . import _LOADERS\n",
    })
    (message,) = _messages(tree)
    assert "import cycle: edgekit.runtimes (runtimes/__init__.py:1, named reference)" in message


def test_naming_a_module_above_is_a_declaration_but_importing_it_by_name_is_not(tmp_path):
    tree = _tree(tmp_path, {
        "runtimes/formats.py": 'EXPORTER = "edgekit.pipeline:export"\n',
        "runtimes/load.py": 'import importlib\nimportlib.import_module("edgekit.pipeline")\n',
    })
    assert _messages(tree) == [
        "runtimes/load.py:2: edgekit.runtimes.load imports edgekit.pipeline (import by name): upward import: "
        "layer 'runtimes' may not import layer 'pipeline' above it"
    ]


def test_device_layers_import_no_torch_even_lazily(tmp_path):
    tree = _tree(tmp_path, {"runtimes/x.py": "def f():\n    import torch.nn\n"})
    assert _messages(tree) == [
        "runtimes/x.py:2: edgekit.runtimes.x imports torch (lazy import): forbidden import: layer 'runtimes' must "
        "not import " + ", ".join(layers.FORBIDDEN["runtimes"])
    ]


def test_cli_and_tools_do_not_import_each_other(tmp_path):
    tree = _tree(tmp_path, {"edgekit/tools/build.py": "from edgekit.cli import main\nfrom edgekit.pipeline import x\n"})
    assert _messages(tree) == [
        "edgekit/tools/build.py:1: edgekit.tools.build imports edgekit.cli (import): same-rank import: layers 'tools' "
        "and 'cli' are independent"
    ]


def test_a_module_outside_every_layer_is_named(tmp_path):
    tree = _tree(tmp_path, {"edgekit/helpers.py": ""})
    assert _messages(tree) == [
        "edgekit/helpers.py: module edgekit.helpers is in no layer: add it to LAYERS in tests/layers.py and to "
        "docs/ARCHITECTURE.md"
    ]


@pytest.mark.parametrize("source, target", [("from ..pipeline import x", "edgekit.pipeline"),
                                            ("from edgekit import pipeline", "edgekit.pipeline"),
                                            ("import edgekit.pipeline as p", "edgekit.pipeline")])
def test_every_import_form_resolves(tmp_path, source, target):
    tree = _tree(tmp_path, {"edgekit/cli/x.py": source + "\n"})
    known = layers.modules(tree)
    (imp,) = layers.imports_of("edgekit.cli.x", tree / "edgekit/cli/x.py", known, tree)
    assert (imp.imported, imp.line, imp.how) == (target, 1, "import")
