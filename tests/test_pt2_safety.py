"""Loading a ``.pt2`` archive must not run code from it (issue 9, item 3).

Each crafted archive is a good ``torch.export.save`` archive with one part swapped for a pickle whose
``__reduce__`` creates a marker file. ``edgekit export --model crafted.pt2`` must refuse it in one line,
exit non-zero, and leave no marker; ``--trust-model-file`` is the explicit way to load such a file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import pytest
import torch

from edgekit.cli import main
from tests.fixtures.tiny_models import tiny_cnn


class _Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    program = torch.export.export(tiny_cnn().eval(), (torch.randn(1, 3, 16, 16),))
    torch.export.save(program, path)
    return path


def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy the archive ``src`` to ``dst``; ``edit(relative name, bytes)`` returns the new bytes of a member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            relative = info.filename.split("/", 1)[1]  # under the archive's top folder
            zout.writestr(info.filename, edit(relative, zin.read(info.filename)))


def _export(tmp_path: Path, capsys, model: Path, *extra: str) -> tuple[int, str]:
    code = main(["export", "--model", str(model), "--out", str(tmp_path / "out"), "--bench-runs", "0", *extra])
    return code, capsys.readouterr().err


def _assert_refused(code: int, stderr: str, marker: Path, tmp_path: Path, message: str) -> None:
    assert not marker.exists(), "loading the archive ran code from it"
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0] and "refusing (pass --trust-model-file if you trust this file)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_pickled_sample_inputs_are_refused(good_pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    payload = pickle.dumps(_Payload(marker))
    _rewrite(good_pt2, crafted, lambda name, data: payload if name == "data/sample_inputs/model.pt" else data)
    code, stderr = _export(tmp_path, capsys, crafted)
    _assert_refused(code, stderr, marker, tmp_path,
                    f"--model {crafted}: data/sample_inputs/model.pt is a pickle, which can run code when loaded")


def test_sample_inputs_that_are_not_plain_tensors_are_refused(good_pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    buffer = io.BytesIO()
    torch.save(((_Payload(marker),), {}), buffer)  # a regular torch.save archive whose pickle is not plain tensors
    _rewrite(good_pt2, crafted, lambda name, data: buffer.getvalue() if name == "data/sample_inputs/model.pt" else data)
    code, stderr = _export(tmp_path, capsys, crafted)
    _assert_refused(code, stderr, marker, tmp_path, "data/sample_inputs/model.pt holds objects other than plain tensors")


def _use_pickle_archive(good_pt2: Path, crafted: Path, marker: Path) -> None:
    payload = pickle.dumps(_Payload(marker))

    def edit(name: str, data: bytes) -> bytes:
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        return payload if name == "data/weights/weight_0" else data

    _rewrite(good_pt2, crafted, edit)


def test_use_pickle_weights_are_refused(good_pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    _use_pickle_archive(good_pt2, crafted, marker)
    code, stderr = _export(tmp_path, capsys, crafted)
    _assert_refused(code, stderr, marker, tmp_path,
                    f"--model {crafted}: data/weights/model_weights_config.json stores 'conv.weight' as a pickle")


def test_trust_model_file_lets_the_user_load_a_pickled_archive(good_pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    _use_pickle_archive(good_pt2, crafted, marker)
    _export(tmp_path, capsys, crafted, "--trust-model-file")
    assert marker.exists()  # the user vouched for the file: torch's own loader ran, pickles included


def test_good_archive_exports_and_matches_torch(good_pt2, tmp_path, capsys):
    import numpy as np

    import edgekit.runtimes as rt

    code, stderr = _export(tmp_path, capsys, good_pt2)
    assert code == 0, stderr
    session = rt.load(tmp_path / "out")
    # forward(self, x): a lone generic argument name keeps edgekit's stable input name
    assert [s.name for s in session.inputs] == ["input"] and session.inputs[0].shape == (1, 3, 16, 16)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = tiny_cnn().eval()(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(x)["output"] - expected).max() < 1e-5


def _edit_program(src: Path, dst: Path, change) -> None:
    """Copy the archive with ``change(program_json)`` applied to models/model.json."""

    def edit(name: str, data: bytes) -> bytes:
        if name != "models/model.json":
            return data
        program = json.loads(data)
        change(program)
        return json.dumps(program).encode()

    _rewrite(src, dst, edit)


def _first(document, key: str) -> dict:
    """The first dict in a JSON document that has ``key``."""
    stack = [document]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if key in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError(f"no {key!r} in the program")


@pytest.fixture(scope="module")
def dynamic_pt2(tmp_path_factory) -> Path:
    """A program exported with a dynamic batch: its shapes hold symbolic expressions (sympy strings)."""
    path = tmp_path_factory.mktemp("pt2") / "dynamic.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(tiny_cnn().eval(), (torch.randn(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, path)
    return path


def test_shape_expressions_that_are_code_are_refused(dynamic_pt2, tmp_path, capsys):
    # torch.export.load parses shape expressions with sympy.sympify, which calls eval()
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    code = f"sympify.__globals__['__builtins__']['__import__']('os').system('touch {marker}')"
    _edit_program(dynamic_pt2, crafted, lambda program: _first(program, "expr_str").update(expr_str=code))
    status, stderr = _export(tmp_path, capsys, crafted)
    _assert_refused(status, stderr, marker, tmp_path, "models/model.json has a shape expression that is not plain arithmetic")


def test_guard_code_in_the_program_never_runs(good_pt2, tmp_path, capsys):
    # ExportedProgram.module() compiles guards_code into a function that runs on every call
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted.pt2"
    guard = f"__import__('os').system('touch {marker}') == 0"
    _edit_program(good_pt2, crafted, lambda program: program.update(guards_code=[guard]))
    status, stderr = _export(tmp_path, capsys, crafted)
    assert not marker.exists()
    assert status == 0, stderr  # the program itself is fine; its guards are not run (the shapes are fixed)


def test_graph_targets_must_be_torch_operators(good_pt2, tmp_path, capsys):
    crafted = tmp_path / "crafted.pt2"
    _edit_program(good_pt2, crafted, lambda program: _first(program, "target").update(target="torch.ops.load_library"))
    status, stderr = _export(tmp_path, capsys, crafted)
    _assert_refused(status, stderr, tmp_path / "MARKER", tmp_path,
                    "models/model.json calls 'torch.ops.load_library', which is not a torch operator")


def test_dynamic_archive_passes_the_check_and_loads(dynamic_pt2):
    from edgekit.models.pt2 import check_archive, load_program

    check_archive(dynamic_pt2.read_bytes(), "dynamic.pt2")  # real symbolic shapes are plain arithmetic
    program = load_program(dynamic_pt2)
    assert [str(d) for d in program.example_inputs[0][0].shape] == ["2", "3", "16", "16"]
