"""The shipped SLM checkpoints: loadable with weights_only, equal size, and they solve the task through the runtime."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.models.registry import ModelRequest  # noqa: E402
from edgekit.models.slm.data import HELDOUT_SEED, make_examples  # noqa: E402
from edgekit.models.slm.export import BUILTIN_CHECKPOINTS  # noqa: E402
from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle  # noqa: E402

pytestmark = pytest.mark.skipif(
    not all(p.is_file() for p in BUILTIN_CHECKPOINTS.values()), reason="shipped SLM weights not present"
)


def test_checkpoints_are_fp16_state_dicts_of_equal_size():
    payloads = {ref: torch.load(path, map_location="cpu", weights_only=True) for ref, path in BUILTIN_CHECKPOINTS.items()}
    counts = {}
    for ref, payload in payloads.items():
        assert all(t.dtype == torch.float16 for t in payload["state_dict"].values())
        counts[ref] = sum(t.numel() for t in payload["state_dict"].values())
        assert payload["meta"]["heldout_exact_match"] >= 0.0
    assert payloads["slm-encdec"]["config"]["kind"] == "encoder-decoder"
    assert payloads["slm-deconly"]["config"]["kind"] == "decoder-only"
    assert abs(counts["slm-encdec"] / counts["slm-deconly"] - 1) < 0.01


@pytest.mark.parametrize("ref", ["slm-encdec", "slm-deconly"])
def test_exported_model_solves_heldout_examples(ref, tmp_path):
    """Exact match through edgekit.runtimes on 40 held-out examples is close to what training reported."""
    export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(ref), measure=MeasureConfig(runs=0)))
    lm = rt.load(tmp_path / "b", threads=1)
    pairs = list(make_examples(40, HELDOUT_SEED))
    prompts = [lm.tokenizer.encode(s) for s, _ in pairs]
    out = lm.generate(prompts, max_new_tokens=10)
    start = 1 if lm.bundle.manifest.task == "seq2seq" else max(map(len, prompts))
    texts = [lm.tokenizer.decode(row[start:]) for row in out.tolist()]  # pads after EOS decode to nothing
    exact = sum(t == target for t, (_, target) in zip(texts, pairs)) / len(pairs)
    reported = lm.bundle.manifest.provenance["heldout_exact_match"]
    assert exact >= reported - 0.2, (exact, reported)
