"""edgekit's generation equals Hugging Face ``generate()`` token for token (T5 relu, T5 gated-gelu, BART).

Random-init models get re-initialised weights (normal std 0.3) so that outputs depend on the input,
and the EOS logit is raised so that some sequences stop early.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.models.registry import ModelRequest  # noqa: E402
from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle  # noqa: E402

VOCAB = 64
MAX_NEW = 12


def tiny_config(family: str):
    if family == "bart":
        return transformers.BartConfig(
            vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        )
    extra = {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False} if family == "flan-t5" else {}
    return transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1, **extra,
    )


def build_hf_model(family: str, directory, seed: int = 0):
    """A random model, re-initialised (std 0.3; 1.0 for post-norm BART), EOS made likelier, saved."""
    torch.manual_seed(seed)
    cls = transformers.BartForConditionalGeneration if family == "bart" else transformers.T5ForConditionalGeneration
    model = cls(tiny_config(family)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0 if family == "bart" else 0.3)
        if family == "bart":
            model.final_logits_bias[0, model.config.eos_token_id] += 6.0
        else:
            model.lm_head.weight[model.config.eos_token_id] *= 4.0 if family == "t5" else 6.0
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module", params=["t5", "flan-t5", "bart"])
def exported(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    model = build_hf_model(request.param, base / "hf")
    export_bundle(ExportRequest(out=base / "bundle", model=ModelRequest(f"hf:{base / 'hf'}"), measure=MeasureConfig(runs=0)))
    return model, rt.load(base / "bundle", threads=1)


INPUTS = [np.random.default_rng(i).integers(3, VOCAB, size=2 + (i * 7) % 13).tolist() for i in range(20)]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generation_equals_hf_generate(exported, num_beams):
    model, lm = exported
    stopped_early, lengths = 0, []
    for ids in INPUTS:
        ref = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, num_beams=num_beams)[0].tolist()
        got = lm.generate([ids], max_new_tokens=MAX_NEW, num_beams=num_beams)[0].tolist()
        assert got == ref, f"input {ids}"
        stopped_early += ref[-1] in lm.generation["eos_token_id"] and len(ref) < MAX_NEW + 1
        lengths.append(len(ref))
    assert stopped_early >= 2, "the test needs sequences that stop at EOS"
    assert max(lengths) > 4, "the test needs sequences longer than a few tokens"
    assert len({tuple(lm.generate([ids], max_new_tokens=MAX_NEW)[0]) for ids in INPUTS}) >= 5, "degenerate model"


@pytest.mark.parametrize("num_beams", [1, 4])
def test_padded_batch_equals_hf_generate(exported, num_beams):
    model, lm = exported
    batch = INPUTS[:6]
    width = max(map(len, batch))
    pad = model.config.pad_token_id
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in batch])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch])
    ref = model.generate(ids, attention_mask=mask, max_new_tokens=MAX_NEW, num_beams=num_beams).tolist()
    assert lm.generate(batch, max_new_tokens=MAX_NEW, num_beams=num_beams).tolist() == ref
    assert lm.generate(ids.numpy(), attention_mask=mask.numpy(), max_new_tokens=MAX_NEW, num_beams=num_beams).tolist() == ref
