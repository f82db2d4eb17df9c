"""The encoder-decoder SLM in TFLite (static shapes: a padded source, a fixed-size KV cache written at an index):
``edgekit export --model slm-encdec --format tflite`` then ``edgekit generate`` gives the ONNX bundle's tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.cli import main  # noqa: E402
from edgekit.models.slm.data import HELDOUT_SEED, make_examples  # noqa: E402
from edgekit.runtimes.errors import InputMismatchError  # noqa: E402


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    base = tmp_path_factory.mktemp("slm-tflite")
    for fmt in ("onnx", "tflite"):
        assert main(["export", "--model", "slm-encdec", "--format", fmt, "--out", str(base / fmt), "--json"]) == 0
    return base / "onnx", base / "tflite"


def _texts(count: int) -> list[str]:
    return [source for source, _ in make_examples(count, HELDOUT_SEED + 7)]


def test_manifest_records_static_graphs_and_chained_parity(bundles):
    data = json.loads((bundles[1] / "manifest.json").read_text())
    assert data["format"] == "tflite"
    decoder_inputs = {s["name"]: s["shape"] for s in data["graphs"]["decoder"]["inputs"]}
    assert decoder_inputs["cache_position"] == ["batch", 1]
    assert decoder_inputs["past_key_0"][2] == 128 and decoder_inputs["encoder_attention_mask"] == ["batch", 128]
    chained = data["validation"]["chained_vs_source"]
    assert chained["passed"] and chained["max_abs_error"] < 1e-3
    assert chained["static"] == {"source_length": 128, "cache_length": 128}
    assert data["extra"]["model"]["static"] == {"source_length": 128, "cache_length": 128}


def test_greedy_and_beam_tokens_equal_the_onnx_bundle(bundles):
    onnx, tflite = (rt.load(b, threads=1) for b in bundles)
    texts = _texts(12)
    ids = onnx.encode(texts)
    greedy = [onnx.generate(ids, max_new_tokens=8), tflite.generate(ids, max_new_tokens=8)]
    np.testing.assert_array_equal(greedy[0], greedy[1])
    beams = [s.generate(ids[:3], max_new_tokens=6, num_beams=3) for s in (onnx, tflite)]
    np.testing.assert_array_equal(beams[0], beams[1])
    # the shipped model answers the letters task through the static graphs too
    answers = [tflite.generate(text=t, max_new_tokens=8) for t in texts]
    expected = [target for _, target in make_examples(12, HELDOUT_SEED + 7)]
    assert sum(a == e for a, e in zip(answers, expected)) >= 10


def test_draft_decoding_keeps_the_tokens(bundles):
    _, tflite = (rt.load(b, threads=1) for b in bundles)
    ids = tflite.encode(_texts(4))
    plain = tflite.generate(ids, max_new_tokens=8)
    drafted = tflite.generate(ids, max_new_tokens=8, draft="input", draft_tokens=4)
    np.testing.assert_array_equal(plain, drafted)


def test_cli_generate_prints_the_onnx_tokens(bundles, capsys):
    printed = []
    for bundle in bundles:
        capsys.readouterr()
        assert main(["generate", str(bundle), "--text", "qzzqaabbqzzyyyyy", "--json"]) == 0
        printed.append(json.loads(capsys.readouterr().out)["new_tokens"])
    assert printed[0] == printed[1]


def test_static_limits_are_one_line_errors(bundles):
    tflite = rt.load(bundles[1], threads=1)
    with pytest.raises(InputMismatchError, match=r"input_ids: 140 tokens but this static-shape bundle's encoder takes at most 128"):
        tflite.generate([[5] * 140], max_new_tokens=2)
    with pytest.raises(InputMismatchError, match=r"KV cache holds 128 \(lower max_new_tokens\)"):
        tflite.generate([[5, 6, 7]], max_new_tokens=200, min_new_tokens=200)


@pytest.mark.parametrize("model, expected", [
    ("slm-deconly", "a decoder-only SLM exports to onnx"),
])
def test_models_without_a_static_form_are_refused(tmp_path, capsys, model, expected):
    assert main(["export", "--model", model, "--format", "tflite", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "static-shape formats (tflite)" in err
    assert not (tmp_path / "b").exists()


def test_format_all_bundle_benches_every_format(tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["export", "--model", "slm-encdec", "--target", "rpi5", "--format", "all", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["bench", str(out), "--formats", "all", "--runs", "3", "--warmup", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["format"], r["runtime"]) for r in data["rows"]] == [("tflite", "litert"), ("onnx", "onnxruntime")]
    assert all(r["token_agreement_vs"]["value"] == 1.0 and r["first_token_ms_p50"] > 0 for r in data["rows"])
    assert {"format": "onnx", "precision": "int8"} in [{k: i[k] for k in ("format", "precision")} for i in data["not_in_bundle"]]


def test_int8_tflite_variant_records_its_token_agreement(tmp_path, bundles):
    out = tmp_path / "int8"
    assert main(["export", "--model", "slm-encdec", "--format", "tflite", "--precision", "int8", "--out", str(out)]) == 0
    data = json.loads((out / "manifest.json").read_text())
    record = data["validation"]["precision"]
    assert data["graphs"]["decoder"]["file"] == "decoder.int8.tflite"
    assert record["token_agreement"] >= 0.99 and record["method"].startswith("ai-edge-quantizer dynamic_wi8_afp32")
    assert abs(record["exact_match_variant"] - record["exact_match_fp32"]) <= 0.02
    fp32, int8 = rt.load(bundles[1], threads=1), rt.load(out, threads=1)
    ids = fp32.encode(_texts(6))
    assert np.mean(fp32.generate(ids, max_new_tokens=6) == int8.generate(ids, max_new_tokens=6)) >= 0.95
