"""The generation runtime: decoding options, batching, streaming, input errors, and no torch on the device."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.models.slm.config import SlmConfig  # noqa: E402
from edgekit.runtimes.errors import InputMismatchError, UsageError  # noqa: E402
from edgekit.runtimes.generate import GenerationConfig  # noqa: E402

TINY = SlmConfig.encoder_decoder(layers=3, d_model=32, n_heads=2, d_ff=64, max_length=40)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    from tests.fixtures.slm import export_tiny_pair

    bundles = export_tiny_pair(tmp_path_factory.mktemp("gen"), TINY, seed=3, weight_std=0.3)
    return {name: rt.load(path, threads=1) for name, path in bundles.items()}


PROMPTS = [[10, 11, 12, 13, 14], [40, 41], [90, 91, 92, 93, 94, 95, 96, 97], [200]]


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_padded_batch_equals_rows_alone(lms, kind, num_beams):
    """Right padding (seq2seq) and left padding (causal LM) give each row what it gets alone."""
    lm = lms[kind]
    batch = lm.generate(PROMPTS, max_new_tokens=6, num_beams=num_beams)
    for i, prompt in enumerate(PROMPTS):
        alone = lm.generate([prompt], max_new_tokens=6, num_beams=num_beams)[0]
        if kind == "encdec":
            assert batch[i, : len(alone)].tolist() == alone.tolist()
        else:  # the batch row is the left-padded prompt followed by the new tokens
            width = max(map(len, PROMPTS))
            assert batch[i, width - len(prompt) : width - len(prompt) + len(alone)].tolist() == alone.tolist()


def test_sampling_is_seeded_and_top_k_1_is_greedy(lms):
    lm = lms["encdec"]
    greedy = lm.generate(PROMPTS, max_new_tokens=8)
    assert np.array_equal(lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, top_k=1, seed=5), greedy)
    a = lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=2.0, seed=7)
    b = lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=2.0, seed=7)
    c = lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=2.0, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    tight = lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, top_p=1e-6, seed=9)
    assert np.array_equal(tight, greedy)  # top-p keeps only the most likely token


def test_streaming_callback_sees_every_token(lms):
    lm = lms["encdec"]
    seen = []
    result = lm.generate([PROMPTS[0]], max_new_tokens=7, on_token=lambda t: seen.append(int(t[0])))
    assert seen == result[0, 1:].tolist()
    seen.clear()  # with beams the settled tokens of the best beam stream (tests/test_cli_inspect_bench_generate.py)
    result = lm.generate([PROMPTS[0]], max_new_tokens=7, num_beams=2, on_token=lambda t: seen.append(int(t[0])))
    assert seen == result[0, 1:].tolist()


def test_eos_stops_and_pads(lms):
    """min_new_tokens forbids EOS; max_new_tokens bounds the length; rows that finished are padded."""
    lm = lms["deconly"]
    out = lm.generate(PROMPTS, max_new_tokens=5, min_new_tokens=5)
    assert out.shape[1] == max(map(len, PROMPTS)) + 5
    assert not np.isin(out[:, -5:], lm.generation["eos_token_id"]).any()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"input_ids": []}, InputMismatchError, "empty"),
        ({"input_ids": [[5], []]}, InputMismatchError, "empty"),
        ({"input_ids": [[5] * 41]}, InputMismatchError, "max input length is 40"),
        ({"input_ids": [[5, 260]]}, InputMismatchError, "token id 260 at \\[0, 1\\] is outside the vocabulary 0..259"),
        ({"input_ids": [[5, -1]]}, InputMismatchError, "outside the vocabulary"),
        ({"input_ids": [[5]], "num_beams": 0}, UsageError, "num_beams must be an integer >= 1"),
        ({"input_ids": [[5]], "max_new_tokens": 0}, UsageError, "max_new_tokens must be an integer >= 1"),
        ({"input_ids": [[5]], "do_sample": True, "temperature": 0.0}, UsageError, "temperature"),
        ({"input_ids": [[5]], "do_sample": True, "num_beams": 2}, UsageError, "beam sampling"),
        ({"input_ids": [[5, 6]], "attention_mask": [[1]]}, InputMismatchError, "attention_mask"),
    ],
)
def test_bad_input(lms, kwargs, error, message):
    with pytest.raises(error, match=message):
        lms["encdec"].generate(**kwargs)


def test_causal_length_budget(lms):
    with pytest.raises(UsageError, match="exceed the model's max length 40"):
        lms["deconly"].generate([[5] * 30], max_new_tokens=20)


def test_generation_config_checks():
    with pytest.raises(UsageError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(UsageError, match="early_stopping"):
        GenerationConfig(early_stopping="sometimes")


def test_byte_tokenizer_roundtrip(lms):
    lm = lms["encdec"]
    ids = lm.tokenizer.encode("héllo")
    assert ids[-1] == 2 and lm.tokenizer.decode(ids) == "héllo"
    assert lms["deconly"].tokenizer.encode("a") == [1, 97 + 4, 3]


def test_runtime_generation_imports_no_torch(lms):
    """A device app loads and generates from a bundle with numpy + onnxruntime only."""
    bundle = lms["encdec"].bundle.path
    code = (
        "import sys, edgekit.runtimes as rt\n"
        f"lm = rt.load({str(bundle)!r}, threads=1)\n"
        "lm.generate([[5, 6, 7]], max_new_tokens=3, num_beams=2)\n"
        "lm.tokenizer.encode('x')\n"
        "bad = [m for m in ('torch', 'transformers', 'onnx', 'typer') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
