"""The copy-heavy correction task that edgekit/tools/train_t5_copy.py trains on and benchmarks/seq2seq.py --model
draws its inputs from: seeded, byte-level, the output mostly a copy of the input. (Training itself needs a GPU and
is not run here.)"""

from __future__ import annotations

import difflib

import pytest

import numpy as np

from edgekit.tools.train_t5_copy import T5_COPY_CONFIG, CopyTask, _batch, _curriculum, decode, encode, heldout


def test_bytes_round_trip_and_specials_fit_the_vocabulary():
    text = "abc xyz"
    ids = encode(text)
    assert ids[-1] == T5_COPY_CONFIG["eos_token_id"] and max(ids) < T5_COPY_CONFIG["vocab_size"]
    assert decode([0, *ids]) == text  # pad and eos are dropped


def test_the_task_is_seeded_and_copy_heavy():
    task = CopyTask(seed=0)
    assert task.lexicon == CopyTask(seed=0).lexicon != CopyTask(seed=1).lexicon
    assert task.example(np.random.default_rng(5), 80) == CopyTask(seed=0).example(np.random.default_rng(5), 80)
    rng = np.random.default_rng(5)
    for source, target in (task.example(rng, 80) for _ in range(50)):
        assert len(target) <= 80 and set(target.split()) <= set(task.lexicon)
        assert difflib.SequenceMatcher(None, source, target).ratio() >= 0.85  # a few edits: the output copies


def test_heldout_inputs_have_the_asked_length_and_differ_from_training_batches():
    task = CopyTask(seed=0)
    for tokens in (16, 128):
        pairs = heldout(task, 4, tokens)
        assert [len(ids) for ids, _ in pairs] == [tokens] * 4 and all(ids[-1] == 1 for ids, _ in pairs)
    assert heldout(task, 2, 16) == heldout(CopyTask(seed=0), 2, 16)
    sources, targets = _batch((0, 0, 3, 40))
    assert sources.shape[0] == targets.shape[0] == 3
    assert all(decode(row[row >= 0]) in task.lexicon or " " in decode(row[row >= 0]) for row in targets)


def test_curriculum_grows_to_the_longest_line_by_half_the_steps():
    assert _curriculum(0, 100, 160) == 24
    assert _curriculum(50, 100, 160) == _curriculum(99, 100, 160) == 160


def test_previous_token_init_points_two_heads_at_the_previous_position():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from edgekit.tools.train_t5_copy import previous_token_init

    config = transformers.T5Config(vocab_size=260, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                                   num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    config._attn_implementation = "eager"  # returns attention weights
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    previous_token_init(model)
    ids = torch.arange(3, 19)[None]
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=ids, output_attentions=True)
    for attentions in (out.encoder_attentions[0], out.decoder_attentions[0]):  # (1, heads, query, key)
        to_previous = attentions[0, :, torch.arange(1, 16), torch.arange(0, 15)].mean(-1)
        assert to_previous[:2].min() > 0.9, to_previous  # the two initialised heads
        assert to_previous[2:].max() < 0.5, to_previous  # the others untouched
