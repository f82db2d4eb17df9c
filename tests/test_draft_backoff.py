"""Input-guided drafting backs off when the model does not copy: after a rejected draft the next one is only
as long as the accepted prefix + 1 (growing by 2 after each fully accepted draft), so a model that never
copies pays for 2-token blocks, not full 8-token drafts (measured at T5-small size on a model that copies
nothing: full drafts cost 0.73x plain greedy's speed, benchmarks/seq2seq.py --model)."""

from __future__ import annotations

import numpy as np

from edgekit.runtimes.generate import GenerationConfig, greedy_or_sample, greedy_with_input_draft
from tests.test_draft import Copier

VOCAB = 64


class Skipper(Copier):
    """After token t it predicts t + 2, while the input counts 1, 2, 3, ...: every draft matches and is rejected."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        fed = tokens[0].tolist()
        self.calls += 1
        self.cache += fed
        self.last_logits = np.eye(VOCAB, dtype=np.float32)[(np.array(fed) + 2) % VOCAB][None]
        return self.last_logits[:, -1]


def test_rejected_drafts_shrink_and_tokens_stay_greedy():
    cfg = GenerationConfig(max_new_tokens=12, pad_token_id=0)
    source = list(range(1, 40))
    greedy = greedy_or_sample(Skipper(), np.array([[1]]), cfg)
    model = Skipper()
    got, stats = greedy_with_input_draft(model, np.array([[1]]), cfg, source, 8, 0)
    assert got.tolist() == greedy.tolist()
    assert stats.accepted == 0 and stats.decoder_calls == 12
    # the first draft is 8 long, every later one a single token (without the back-off: 60 drafted tokens)
    assert stats.drafted == 8 + 10 and model.calls == 12
    assert model.cache == got[0, :-1].tolist()  # every rejected draft token was rolled back
