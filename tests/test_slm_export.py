"""Export of edgekit's own SLMs and of Hugging Face directories: graphs, parity, manifest, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.models.registry import ModelRequest  # noqa: E402
from edgekit.models.slm.config import SlmConfig, matched_decoder_only  # noqa: E402
from edgekit.models.slm.graphs import slm_parts  # noqa: E402
from edgekit.models.slm.model import build_model, save_checkpoint  # noqa: E402
from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle  # noqa: E402
from dataclasses import replace  # noqa: E402

from edgekit.runtimes.bundle import read_bundle  # noqa: E402
from edgekit.runtimes.bundle_writer import BundleWriter  # noqa: E402
from edgekit.runtimes.errors import BundleError, ModelLoadError, UsageError, ValidationError  # noqa: E402

TINY = SlmConfig.encoder_decoder(layers=3, d_model=32, n_heads=2, d_ff=64, max_length=64)


@pytest.fixture(scope="module")
def slm_bundles(tmp_path_factory):
    """A tiny enc-dec checkpoint and its matched decoder-only baseline, exported through the pipeline."""
    from tests.fixtures.slm import export_tiny_pair

    return export_tiny_pair(tmp_path_factory.mktemp("slm"), TINY, seed=0)


def test_encdec_bundle_layout_and_parity(slm_bundles):
    manifest = read_bundle(slm_bundles["encdec"]).manifest
    assert manifest.task == "seq2seq" and sorted(manifest.graphs) == ["decoder", "encoder"]
    assert manifest.validation["chained_vs_source"]["passed"]
    assert max(manifest.validation["max_abs_error"].values()) < 1e-4
    names = [s.name for s in manifest.graph("decoder").inputs]
    assert names[:2] == ["decoder_input_ids", "encoder_attention_mask"] and "past_key_0" in names and "cross_value_0" in names
    gen = manifest.extra["generation"]
    assert (gen["decoder_start_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, [2], 0)
    assert manifest.extra["tokenizer"] == {"kind": "byte", "files": [], "prefix": [], "suffix": [2]}


def test_deconly_bundle_and_equal_size(slm_bundles):
    manifest = read_bundle(slm_bundles["deconly"]).manifest
    assert manifest.task == "causal-lm" and list(manifest.graphs) == ["decoder"]
    assert manifest.validation["chained_vs_source"]["passed"]
    base = matched_decoder_only(TINY)
    assert abs(base.parameter_count() / TINY.parameter_count() - 1) < 0.02
    assert sum(p.numel() for p in build_model(base).parameters()) == base.parameter_count()


def test_runtime_logits_match_torch(slm_bundles, tmp_path):
    """The bundle's run() (encoder + one decoder pass) equals the torch model's teacher-forced logits."""
    from edgekit.models.slm.model import load_checkpoint

    model = load_checkpoint(slm_bundles["encdec"].parent / "encdec.pt")
    lm = rt.load(slm_bundles["encdec"])
    ids = np.array([[10, 11, 12, 2], [20, 21, 2, 0]], np.int64)
    mask = (ids != 0).astype(np.int64)
    dec = np.array([[1, 30, 31], [1, 40, 41]], np.int64)
    got = lm.run({"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec})["logits"]
    ref = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(dec)).detach().numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_parity_failure_raises_and_writes_nothing(tmp_path, monkeypatch):
    """Graphs from one model checked against another model's forward: ValidationError, no files."""
    import edgekit.models.slm.export as slm_export

    torch.manual_seed(0)
    parts = slm_parts(build_model(TINY), "a")
    other = build_model(TINY).eval()
    wrong = replace(parts, reference=other)
    monkeypatch.setattr(slm_export, "resolve_parts", lambda ref: (wrong, {"kind": "byte"}))
    with pytest.raises(ValidationError, match="differ from the source model"):
        export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest("slm-encdec"), measure=MeasureConfig(runs=0)))
    assert not (tmp_path / "b").exists()


def test_hf_directory_with_tokenizer(tmp_path):
    """Tokenizer files are copied into the bundle and --text style generation works through them."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(61)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<pad>", "</s>", "<unk>"])
    config = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                                   num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path / "hf")
    tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(f"hf:{tmp_path / 'hf'}"), measure=MeasureConfig(runs=0)))
    bundle = read_bundle(tmp_path / "b")
    assert bundle.manifest.extra["tokenizer"]["files"] == ["tokenizer/tokenizer.json"]
    assert "tokenizer/tokenizer.json" in bundle.manifest.files
    lm = rt.load(tmp_path / "b")
    assert lm.tokenizer.encode("w1 w2 w60") == [4, 5, 63]
    assert lm.tokenizer.decode([0, 4, 5, 1]) == "w1 w2"
    # a tokenizer file missing from the bundle is caught by the sha256 check
    (tmp_path / "b" / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer/tokenizer.json"):
        rt.load(tmp_path / "b")


def test_unsupported_hf_architecture_is_named(tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(ModelLoadError, match="architecture GPT2LMHeadModel is not supported"):
        export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(f"hf:{tmp_path / 'gpt'}"), measure=MeasureConfig(runs=0)))
    with pytest.raises(ModelLoadError, match="no config.json"):
        export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(f"hf:{tmp_path}"), measure=MeasureConfig(runs=0)))
    assert not (tmp_path / "b").exists()


def test_bundle_whose_graphs_disagree_on_hidden_size(slm_bundles, tmp_path):
    """An encoder from a d_model-32 model next to a decoder from a d_model-48 model is refused on load."""
    import dataclasses

    wide = dataclasses.replace(TINY, d_model=48, n_heads=2)
    torch.manual_seed(1)
    save_checkpoint(build_model(wide), tmp_path / "wide.pt")
    export_bundle(ExportRequest(out=tmp_path / "wide", model=ModelRequest(f"slm:{tmp_path / 'wide.pt'}"), measure=MeasureConfig(runs=0)))
    narrow = read_bundle(slm_bundles["encdec"]).manifest
    wide_manifest = read_bundle(tmp_path / "wide").manifest
    with BundleWriter(tmp_path / "mixed") as stage:
        shutil.copyfile(slm_bundles["encdec"] / "encoder.onnx", stage.path / "encoder.onnx")
        shutil.copyfile(tmp_path / "wide" / "decoder.onnx", stage.path / "decoder.onnx")
        graphs = {"encoder": narrow.graph("encoder"), "decoder": wide_manifest.graph("decoder")}
        stage.commit(replace(narrow, graphs=graphs, files={}))
    with pytest.raises(BundleError, match="graphs disagree on hidden size"):
        rt.load(tmp_path / "mixed")


def test_unknown_precision_and_dynamo_are_refused_before_loading(tmp_path):
    from edgekit.pipeline import OutputConfig

    # int8 / fp16 are exported since issue 17 (tests/test_slm_precision.py); an unknown precision is refused
    request = ExportRequest(out=tmp_path / "b", model=ModelRequest("slm-encdec"), output=OutputConfig(precision="int4"))
    with pytest.raises(UsageError, match="--precision int4"):
        export_bundle(request)
    request = ExportRequest(out=tmp_path / "b", model=ModelRequest("slm-encdec"), output=OutputConfig(opset=18, dynamo=True))
    with pytest.raises(UsageError, match="--dynamo: slm-encdec exports with the TorchScript exporter only"):
        export_bundle(request)
    assert not (tmp_path / "b").exists()
