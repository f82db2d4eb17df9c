"""``generate(..., draft="input")``: input-guided aggressive decoding gives plain greedy's tokens in fewer
decoder calls (a toy copying model; the shipped models; random T5 / BART), and bad uses are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtimes as rt
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.generate import GenerationConfig, greedy_or_sample, greedy_with_input_draft

VOCAB, EOS = 16, 1


class Copier:
    """A toy model with a KV cache: after token t it predicts t + 1, after 9 it predicts EOS, after 0 it
    predicts 5; the cache is the list of fed tokens, so a wrong roll-back changes the logits."""

    def __init__(self) -> None:
        self.cache: list[int] = []
        self.calls = 0

    def expand(self, n: int) -> None:
        pass

    def reorder(self, index) -> None:
        pass

    def truncate(self, length: int) -> None:
        self.cache = self.cache[:length]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        self.calls += 1
        logits = []
        for t in tokens[0].tolist():
            self.cache.append(t)
            nxt = 5 if t == 0 else EOS if t == 9 else (t + 1) % VOCAB
            row = np.zeros(VOCAB, np.float32)
            row[nxt] = 1.0 + 0.01 * len(self.cache)  # the logits see the cache length
            logits.append(row)
        self.last_logits = np.stack(logits)[None]
        return self.last_logits[:, -1]


def test_toy_copy_model_accepts_drafts_and_matches_greedy():
    cfg = GenerationConfig(max_new_tokens=10, eos_token_id=(EOS,), pad_token_id=0)
    greedy = greedy_or_sample(Copier(), np.array([[0]]), cfg)
    model = Copier()
    streamed = []
    got, stats = greedy_with_input_draft(model, np.array([[0]]), cfg, [5, 6, 7, 3, 9, 10, 11], 4, 1,
                                         lambda t: streamed.append(int(t[0])))
    assert got.tolist() == greedy.tolist() == [[0, 5, 6, 7, 8, 9, EOS]]
    assert streamed == got[0, 1:].tolist()
    # call 1: the start token -> 5; call 2: 5 + draft 6 7 3 9, keeps 6 7 (the model says 8, not 3);
    # call 3: 8 (no suffix of ...7 8 is in the input) -> 9; call 4: 9 + draft 10 11, keeps none -> EOS
    assert (stats.decoder_calls, stats.new_tokens, stats.accepted, stats.drafted, model.calls) == (4, 6, 2, 6, 4)
    assert model.cache == [0, 5, 6, 7, 8, 9]  # the rejected draft tokens were rolled back


def test_draft_respects_max_new_tokens():
    cfg = GenerationConfig(max_new_tokens=3, eos_token_id=(EOS,), pad_token_id=0)
    got, stats = greedy_with_input_draft(Copier(), np.array([[0]]), cfg, [5, 6, 7, 8, 9], 8, 1)
    assert got.tolist() == greedy_or_sample(Copier(), np.array([[0]]), cfg).tolist() == [[0, 5, 6, 7]]


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgekit.cli import main  # noqa: E402
from edgekit.models.registry import ModelRequest  # noqa: E402
from edgekit.models.slm.data import HELDOUT_SEED, make_examples  # noqa: E402
from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_slm_equality import VOCAB as HF_VOCAB, build_hf_model  # noqa: E402


@pytest.fixture(scope="module", params=["slm-encdec", "slm-deconly", "t5", "bart"])
def lm(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    ref = request.param
    if ref in ("t5", "bart"):
        build_hf_model(ref, base / "hf")
        ref = f"hf:{base / 'hf'}"
    export_bundle(ExportRequest(out=base / "b", model=ModelRequest(ref), measure=MeasureConfig(runs=0)))
    return rt.load(base / "b", threads=1)


def _prompts(lm) -> list[list[int]]:
    if lm.bundle.manifest.extra["tokenizer"]["kind"] == "byte":
        return [lm.tokenizer.encode(s) for s, _ in make_examples(12, HELDOUT_SEED)]
    rng = np.random.default_rng(4)
    return [rng.integers(3, HF_VOCAB, size=int(rng.integers(2, 15))).tolist() for _ in range(12)]


@pytest.mark.parametrize("draft_tokens", [1, 4, 8])
def test_draft_gives_greedy_tokens(lm, draft_tokens):
    prompts = _prompts(lm)
    greedy = lm.generate(prompts, max_new_tokens=12)
    drafted = lm.generate(prompts, max_new_tokens=12, draft="input", draft_tokens=draft_tokens)
    assert drafted.tolist() == greedy.tolist()
    stats = lm.last_draft_stats
    assert stats.drafted > 0 and 0 <= stats.accepted <= stats.drafted
    # one call per chosen token, plus the prompt's, less the last one when a chosen token ended the row
    assert stats.new_tokens - stats.accepted <= stats.decoder_calls <= stats.new_tokens - stats.accepted + len(prompts)


def test_shipped_model_accepts_drafts_on_its_task(lm):
    if lm.bundle.manifest.extra["tokenizer"]["kind"] != "byte":
        pytest.skip("the random models copy nothing")
    lm.generate(_prompts(lm), max_new_tokens=12, draft="input", draft_tokens=2)
    assert lm.last_draft_stats.accepted > 0  # the letters answer copies letters of the input


@pytest.mark.parametrize("kwargs, message", [
    ({"do_sample": True}, "greedy tokens only"),
    ({"num_beams": 2}, "greedy tokens only"),
    ({"draft_tokens": 0}, "draft_tokens must be an integer in 1.."),
    ({"draft_tokens": 10_000}, "draft_tokens must be an integer in 1.."),
    ({"draft": "model"}, "draft: expected 'input'"),
])
def test_bad_draft_options_are_refused(lm, kwargs, message):
    with pytest.raises(UsageError, match=message):
        lm.generate([[5, 6, 7]], max_new_tokens=4, **{"draft": "input", **kwargs})


def test_cli_draft_reports_the_accept_rate(lm, capsys):
    if lm.bundle.manifest.name != "slm-encdec":
        pytest.skip("one model is enough for the CLI")
    capsys.readouterr()
    assert main(["generate", str(lm.bundle.path), "--text", "qzzqaabbq", "--draft", "input", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["text"] == ["qab"] and set(printed["draft"]) >= {"drafted", "accepted", "accept_rate"}
    assert main(["generate", str(lm.bundle.path), "--text", "qzzqaabbq", "--draft", "input", "--num-beams", "2"]) != 0
    assert "greedy tokens only" in capsys.readouterr().err
