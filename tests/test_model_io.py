"""Model I/O survives export (issue 9, item 5): names, several inputs, output axes, task, references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.cli import main

FIXTURES = "tests.fixtures.tiny_models"


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _export(capsys, out: Path, *args: str) -> dict:
    code, text = _cli(capsys, "export", "--out", str(out), "--bench-runs", "0", *args)
    assert code == 0, text
    return json.loads((out / "manifest.json").read_text())


def _names(specs: list[dict]) -> list[str]:
    return [spec["name"] for spec in specs]


def _save(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


def test_dict_outputs_keep_their_keys_through_export_and_run(tmp_path, capsys):
    from tests.fixtures.tiny_models import dict_outputs

    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:dict_outputs")
    graph = manifest["graphs"]["model"]
    assert _names(graph["inputs"]) == ["input"]  # forward(self, x): a lone generic name keeps edgekit's stable name
    assert _names(graph["outputs"]) == ["logits", "embedding"]
    assert [o["shape"] for o in graph["outputs"]] == [["batch", 4], ["batch", 6]]
    assert manifest["task"] == "generic"  # a user model is not claimed to be a classifier
    assert set(manifest["validation"]["max_abs_error"]) == {"logits", "embedding"}

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    code, text = _cli(capsys, "run", str(tmp_path / "b"), "--input", _save(tmp_path / "x.npy", x), "--out", str(tmp_path / "o"))
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["embedding.npy", "logits.npy"]
    with torch.no_grad():
        expected = dict_outputs().eval()(torch.from_numpy(x))
    for name in ("logits", "embedding"):
        assert np.abs(np.load(tmp_path / "o" / f"{name}.npy") - expected[name].numpy()).max() < 1e-5


def test_two_inputs_named_by_forward_with_one_shape_each(tmp_path, capsys):
    from tests.fixtures.tiny_models import two_inputs

    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:two_inputs",
                       "--input-shape", "image=1,3,8,8", "--input-shape", "mask=1,1,8,8")
    inputs = manifest["graphs"]["model"]["inputs"]
    assert [(i["name"], i["shape"]) for i in inputs] == [("image", ["batch", 3, 8, 8]), ("mask", ["batch", 1, 8, 8])]
    assert _names(manifest["graphs"]["model"]["outputs"]) == ["output"]

    rng = np.random.default_rng(1)
    image = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    mask = (rng.random((2, 1, 8, 8)) < 0.5).astype(np.float32)
    code, text = _cli(capsys, "run", str(tmp_path / "b"), "--input", f"image={_save(tmp_path / 'i.npy', image)}",
                      "--input", f"mask={_save(tmp_path / 'm.npy', mask)}", "--out", str(tmp_path / "o"))
    assert code == 0, text
    with torch.no_grad():
        expected = two_inputs().eval()(torch.from_numpy(image), torch.from_numpy(mask)).numpy()
    assert np.abs(np.load(tmp_path / "o" / "output.npy") - expected).max() < 1e-5


def test_input_and_output_names_can_be_overridden(tmp_path, capsys):
    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:dict_outputs",
                       "--input-names", "pixels", "--output-names", "scores,features")
    graph = manifest["graphs"]["model"]
    assert _names(graph["inputs"]) == ["pixels"] and _names(graph["outputs"]) == ["scores", "features"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", f"{FIXTURES}:dict_outputs", "--output-names", "a"),
         "--output-names a: the model returns 2 outputs (logits, embedding), got 1 name"),
        (("--model", f"{FIXTURES}:two_inputs", "--input-shape", "image=1,3,8,8", "--input-shape", "mask=1,1,8,8",
          "--input-names", "a"),
         "--input-names a: the model takes 2 inputs (image, mask), got 1 name"),
        (("--model", f"{FIXTURES}:two_inputs", "--input-shape", "1,3,8,8"),
         "--input-shape 1,3,8,8: the model takes 2 inputs (image, mask); give one shape per input as "
         "--input-shape image=1,3,224,224 --input-shape mask=..."),
        (("--model", f"{FIXTURES}:two_inputs", "--input-shape", "image=1,3,8,8"),
         "no input shape for 'mask'; pass --input-shape mask=..."),
        (("--model", f"{FIXTURES}:two_inputs", "--input-shape", "image=1,3,8,8", "--input-shape", "mask=1,1,8,8",
          "--input-shape", "other=1,2"),
         "--input-shape other=1,2: the model has no input 'other' (its inputs: image, mask)"),
        (("--model", f"{FIXTURES}:tiny_cnn", "--dynamic", "depth"), "--dynamic depth: expected hw"),
        (("--model", "nope"), "--model 'nope' is not a model reference"),
    ],
)
def test_io_usage_errors_are_one_line(tmp_path, capsys, args, message):
    code, text = _cli(capsys, "export", "--out", str(tmp_path / "b"), "--bench-runs", "0", *args)
    assert code == 2, text
    assert len(text.strip().splitlines()) == 1 and message in text, text


def test_unknown_reference_lists_every_accepted_form(tmp_path, capsys):
    code, text = _cli(capsys, "export", "--out", str(tmp_path / "b"), "--model", "slm-encdc")
    assert code == 2 and len(text.strip().splitlines()) == 1
    assert "did you mean 'slm-encdec'?" in text
    for form in ("mobilenet-v3-small", "ofa-mbv3", "slm-encdec", "slm-deconly", "slm:FILE.pt", "hf:DIR",
                 "package.module:factory", "path/to/file.py:factory", "a .pt2 file"):
        assert form in text, form


def test_model_file_path_reference(tmp_path, capsys):
    path = Path(__file__).parent / "fixtures" / "tiny_models.py"
    manifest = _export(capsys, tmp_path / "b", "--model", f"{path}:tiny_cnn")
    assert manifest["provenance"]["model"] == f"{path}:tiny_cnn"
    assert manifest["graphs"]["model"]["inputs"][0]["shape"] == ["batch", 3, 16, 16]
    code, text = _cli(capsys, "export", "--out", str(tmp_path / "c"), "--model", f"{tmp_path / 'none.py'}:build")
    assert code == 2 and f"--model {tmp_path / 'none.py'}:build: no such file" in text


def test_segmentation_output_axes_are_readable_and_task_comes_from_the_model(tmp_path, capsys):
    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:tiny_segmenter")
    (output,) = manifest["graphs"]["model"]["outputs"]
    assert output["shape"] == ["batch", 4, 16, 16]  # static spatial input: static spatial output
    assert manifest["task"] == "segmentation"


def test_dynamic_height_and_width(tmp_path, capsys):
    from tests.fixtures.tiny_models import tiny_segmenter

    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:tiny_segmenter", "--dynamic", "hw")
    graph = manifest["graphs"]["model"]
    assert graph["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert graph["outputs"][0]["shape"] == ["batch", 4, "height", "width"]
    assert manifest["validation"]["trials"] == 3  # batch 1, batch 2, and another height x width

    import edgekit.runtimes as rt

    x = np.random.default_rng(2).standard_normal((1, 3, 24, 40)).astype(np.float32)
    got = rt.load(tmp_path / "b").run(x)["output"]
    with torch.no_grad():
        expected = tiny_segmenter().eval()(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 4, 24, 40) and np.abs(got - expected).max() < 1e-4


def test_bench_and_profile_feed_the_exported_spatial_size(tmp_path, capsys):
    """A --dynamic hw bundle was benchmarked on 1x1 images: the manifest now records the example sizes."""
    from edgekit.targets.profile import profile_model

    manifest = _export(capsys, tmp_path / "b", "--model", f"{FIXTURES}:tiny_segmenter", "--dynamic", "hw")
    assert manifest["example_sizes"] == {"batch": 1, "height": 16, "width": 16}
    code, text = _cli(capsys, "bench", str(tmp_path / "b"), "--runs", "3", "--warmup", "1", "--batch", "2", "--json")
    assert code == 0, text
    assert json.loads(text)["inputs"] == {"input": [2, 3, 16, 16]}
    assert profile_model(tmp_path / "b", runs=2, warmup=0).stats.runs == 2


def test_output_axes_that_follow_no_input_axis_get_the_output_name(tmp_path):
    from edgekit.exporters.onnx import export_onnx, validate
    from edgekit.runtimes.spec import TensorSpec
    from tests.fixtures.tiny_models import half_resolution

    spec = (TensorSpec("x", ("batch", 3, "height", "width")),)
    model = half_resolution().eval()
    art = export_onnx(model, spec, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx", output_names=("features",))
    assert art.outputs[0].shape == ("batch", 2, "features_dim2", "features_dim3")
    assert validate(tmp_path / "m.onnx", model, spec, sizes=({"height": 16, "width": 16}, {"batch": 2, "height": 10, "width": 6})).passed


def test_export_onnx_names_dict_outputs_without_being_told(tmp_path):
    from edgekit.exporters.onnx import export_onnx
    from edgekit.runtimes.spec import TensorSpec
    from tests.fixtures.tiny_models import dict_outputs

    spec = (TensorSpec("x", ("batch", 3, 16, 16)),)
    art = export_onnx(dict_outputs().eval(), spec, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx")
    assert [(o.name, o.shape) for o in art.outputs] == [("logits", ("batch", 4)), ("embedding", ("batch", 6))]
