"""Token generation over any runtime: greedy, sampling and beam search, numpy only.

The loops drive a *stepper* (see :class:`Stepper`): an object that feeds new tokens to the model,
keeps its KV cache, and returns the next-token logits. ``edgekit.runtimes.seq2seq`` and
``edgekit.runtimes.causal_lm`` provide steppers over exported graphs; the loops follow Hugging Face
``generate()`` step for step (logits processors, EOS and padding, the vectorised beam search with its
length penalty and early-stopping rules), so the same model gives the same tokens.

Example:
    >>> import numpy as np
    >>> class Counter:                       # a toy model: always predicts (last token + 1) mod 5
    ...     def expand(self, n): pass
    ...     def reorder(self, index): pass
    ...     def step(self, tokens):
    ...         logits = np.zeros((tokens.shape[0], 5), np.float32)
    ...         logits[np.arange(tokens.shape[0]), (tokens[:, -1] + 1) % 5] = 1.0
    ...         return logits
    >>> cfg = GenerationConfig(max_new_tokens=6, eos_token_id=(4,), pad_token_id=0)
    >>> generate_tokens(Counter(), np.array([[1], [3]]), cfg).tolist()
    [[1, 2, 3, 4], [3, 4, 0, 0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence, Union

import numpy as np

from .errors import UsageError

__all__ = ["GenerationConfig", "Stepper", "DraftStepper", "DraftStats", "generate_tokens", "greedy_or_sample",
           "beam_search", "greedy_with_input_draft", "draft_from_input", "log_softmax"]

TokenCallback = Callable[[np.ndarray], None]
_NEG_INF = np.float32(-np.inf)


class Stepper(Protocol):
    """What the loops need from a model with a KV cache."""

    def expand(self, n: int) -> None:
        """Repeat every batch row ``n`` times (row i becomes rows i*n .. i*n+n-1), before the first step."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed ``tokens`` [rows, new] after the cached ones; return the last position's logits [rows, vocab]."""

    def reorder(self, index: np.ndarray) -> None:
        """Keep cache row ``index[j]`` as row j (beam search)."""


class DraftStepper(Stepper, Protocol):
    """A stepper that can also verify a block of draft tokens: every position's logits, and a cache roll-back."""

    last_logits: np.ndarray  # [rows, new, vocab] of the last step

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` cached positions (drop rejected draft tokens)."""


@dataclass(frozen=True)
class DraftStats:
    """What input-guided drafting did in one ``generate``: tokens drafted and accepted, decoder calls, new tokens."""

    drafted: int
    accepted: int
    decoder_calls: int
    new_tokens: int

    @property
    def accept_rate(self) -> float:
        """Accepted / drafted draft tokens (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    def to_json(self) -> dict:
        return {"drafted": self.drafted, "accepted": self.accepted, "accept_rate": round(self.accept_rate, 4),
                "decoder_calls": self.decoder_calls, "new_tokens": self.new_tokens}


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. Values a user passes are checked here, with one-line UsageErrors.

    ``early_stopping``: True stops a batch item once ``num_beams`` hypotheses are finished; False
    (Hugging Face's default) stops when no running beam can beat the worst finished one; "never" is
    the canonical beam search.
    """

    max_new_tokens: int = 20
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    seed: Optional[int] = None
    length_penalty: float = 1.0
    early_stopping: Union[bool, str] = False
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int = 0
    forced_bos_token_id: Optional[int] = None
    forced_eos_token_id: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, (int, np.integer)) or self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.min_new_tokens < 0 or self.min_new_tokens > self.max_new_tokens:
            raise UsageError(f"min_new_tokens must be in 0..max_new_tokens ({self.max_new_tokens}), got {self.min_new_tokens}")
        if not isinstance(self.num_beams, (int, np.integer)) or self.num_beams < 1:
            raise UsageError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.do_sample and self.num_beams > 1:
            raise UsageError("do_sample with num_beams > 1 (beam sampling) is not supported: pick one")
        if not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.early_stopping not in (True, False, "never"):
            raise UsageError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        object.__setattr__(self, "eos_token_id", tuple(int(e) for e in self.eos_token_id))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _process(scores: np.ndarray, cur_len: int, max_length: int, prompt_len: int, cfg: GenerationConfig) -> np.ndarray:
    """Hugging Face's default logits processors, in its order (min new tokens, forced BOS, forced EOS)."""
    if cfg.min_new_tokens and cur_len - prompt_len < cfg.min_new_tokens and cfg.eos_token_id:
        scores[:, list(cfg.eos_token_id)] = _NEG_INF
    if cfg.forced_bos_token_id is not None and cur_len == 1:
        scores[:] = _NEG_INF
        scores[:, cfg.forced_bos_token_id] = 0
    if cfg.forced_eos_token_id is not None and cur_len == max_length - 1:
        scores[:] = _NEG_INF
        forced = cfg.forced_eos_token_id
        scores[:, list(forced) if isinstance(forced, (list, tuple)) else forced] = 0
    return scores


def _warp(scores: np.ndarray, cfg: GenerationConfig) -> np.ndarray:
    """Temperature, then top-k, then top-p (Hugging Face's warper order)."""
    scores = scores / np.float32(cfg.temperature)
    if cfg.top_k and cfg.top_k < scores.shape[-1]:
        kth = -np.partition(-scores, cfg.top_k - 1, axis=-1)[:, cfg.top_k - 1 : cfg.top_k]
        scores = np.where(scores < kth, _NEG_INF, scores)
    if cfg.top_p < 1.0:
        order = np.argsort(scores, axis=-1, kind="stable")  # ascending
        sorted_scores = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(_softmax(sorted_scores), axis=-1)
        remove_sorted = cumulative <= (1 - cfg.top_p)
        remove_sorted[:, -1] = False  # keep at least one token
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        scores = np.where(remove, _NEG_INF, scores)
    return scores


def greedy_or_sample(
    stepper: Stepper, prompt: np.ndarray, cfg: GenerationConfig, on_token: TokenCallback | None = None
) -> np.ndarray:
    """Greedy decoding, or sampling with ``cfg.do_sample`` (seeded by ``cfg.seed``); returns prompt + new tokens."""
    rng = np.random.default_rng(cfg.seed)
    sequences = np.asarray(prompt, np.int64)
    batch, prompt_len = sequences.shape
    max_length = prompt_len + cfg.max_new_tokens
    eos = np.array(cfg.eos_token_id, np.int64)
    unfinished = np.ones(batch, bool)
    logits = stepper.step(sequences)
    while True:
        scores = _process(logits.astype(np.float32, copy=True), sequences.shape[1], max_length, prompt_len, cfg)
        if cfg.do_sample:
            probs = _softmax(_warp(scores, cfg))
            cumulative = np.cumsum(probs, axis=-1)
            draws = rng.random(batch)[:, None] * cumulative[:, -1:]
            next_tokens = np.minimum((cumulative <= draws).sum(axis=-1), probs.shape[-1] - 1)
        else:
            next_tokens = scores.argmax(axis=-1)
        if eos.size:
            next_tokens = np.where(unfinished, next_tokens, cfg.pad_token_id)
        sequences = np.concatenate((sequences, next_tokens[:, None]), axis=1)
        if on_token is not None:
            on_token(next_tokens.copy())
        if eos.size:
            unfinished &= ~np.isin(next_tokens, eos)
        if sequences.shape[1] >= max_length or not unfinished.any():
            return sequences
        logits = stepper.step(next_tokens[:, None])


def _topk(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (ties: lower index first)."""
    return np.argsort(-values, axis=-1, kind="stable")[:, :k]


def _gather(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """array [batch, beams, ...] gathered along axis 1 by index [batch, k]."""
    return array[np.arange(array.shape[0])[:, None], index]


def _agreed_until(running: np.ndarray, running_live: np.ndarray, sequences: np.ndarray, finished: np.ndarray,
                  finished_len: np.ndarray, start: int, cur_len: int) -> int:
    """End of the positions ``start..cur_len-1`` on which, in every row, every hypothesis that can still win agrees.

    Candidates are the live running beams (length ``cur_len``) and the kept finished hypotheses (their own
    lengths). Any final answer descends from one of them, so agreed positions are final.
    """
    ref = running[:, :1, start:cur_len]  # [batch, 1, span]
    span = np.arange(start, cur_len)
    agree = np.ones((running.shape[0], cur_len - start), bool)
    for tokens, valid, length in ((running, running_live, np.full(finished_len.shape, cur_len)),
                                  (sequences, finished, finished_len)):
        same = (tokens[:, :, start:cur_len] == ref) & (span[None, None, :] < length[:, :, None])
        agree &= (same | ~valid[:, :, None]).all(axis=1)
    disagree = ~agree.all(axis=0)
    return start + int(np.argmax(disagree)) if disagree.any() else cur_len


def beam_search(
    stepper: Stepper, prompt: np.ndarray, cfg: GenerationConfig, on_token: TokenCallback | None = None
) -> np.ndarray:
    """Beam search as Hugging Face's vectorised ``_beam_search`` does it; returns the best sequence per row.

    ``on_token(tokens[batch])`` streams the best beam: a position is passed on as soon as every
    hypothesis that can still win agrees on it in every row (so the streamed tokens are exactly the
    returned ones), and the positions still open are passed on when the search ends.
    """
    prompt = np.asarray(prompt, np.int64)
    batch, cur_len = prompt.shape
    nb = cfg.num_beams
    prompt_len = cur_len
    max_length = prompt_len + cfg.max_new_tokens
    eos = np.array(cfg.eos_token_id, np.int64)
    keep = max(2, 1 + eos.size) * nb
    top_beam_mask = np.arange(keep) < nb
    fill = cfg.pad_token_id if cfg.pad_token_id else (int(eos[0]) if eos.size else -1)
    es = cfg.early_stopping
    lp = cfg.length_penalty

    running = np.full((batch, nb, max_length), fill, np.int64)
    running[:, :, :cur_len] = prompt[:, None, :]
    sequences = running.copy()
    running_scores = np.zeros((batch, nb), np.float32)
    running_scores[:, 1:] = -1e9
    beam_scores = np.full((batch, nb), -1e9, np.float32)
    finished = np.zeros((batch, nb), bool)
    improvable = np.ones((batch, 1), bool)
    running_idx = np.full((batch, nb, max_length - cur_len), -1, np.int64)
    beam_indices = running_idx.copy()
    batch_offset = np.arange(batch)[:, None] * nb
    streamed = prompt_len  # positions before this one were passed to on_token

    stepper.expand(nb)
    logits = stepper.step(running[:, :, :cur_len].reshape(batch * nb, cur_len))
    while True:
        log_probs = _process(log_softmax(logits).copy(), cur_len, max_length, prompt_len, cfg)
        vocab = log_probs.shape[-1]
        log_probs = (log_probs.reshape(batch, nb, vocab) + running_scores[:, :, None]).reshape(batch, nb * vocab)
        top = _topk(log_probs, keep)
        top_log_probs = np.take_along_axis(log_probs, top, axis=1)
        top_beams, top_ids = top // vocab, top % vocab
        top_running = _gather(running, top_beams)
        top_running[:, :, cur_len] = top_ids
        top_idx = _gather(running_idx, top_beams)
        top_idx[:, :, cur_len - prompt_len] = top_beams + batch_offset
        hits = np.isin(top_ids, eos) | (cur_len + 1 >= max_length)

        # e. running beams for the next step: the best non-finished continuations
        masked = (top_log_probs + hits.astype(np.float32) * np.float32(-1e9)).astype(np.float32)
        nxt = _topk(masked, nb)
        running, running_scores, running_idx = _gather(top_running, nxt), _gather(masked, nxt), _gather(top_idx, nxt)

        # f. finished hypotheses: merge the just-finished top candidates into the kept ones
        just_finished = hits & top_beam_mask[None, :]
        scores = (top_log_probs / np.float32((cur_len + 1 - prompt_len) ** lp)).astype(np.float32)
        full = finished.all(axis=-1, keepdims=True) & (es is True)
        scores = scores + full.astype(np.float32) * np.float32(-1e9)
        scores = scores + (~improvable).astype(np.float32) * np.float32(-1e9)
        scores = scores + (~just_finished).astype(np.float32) * np.float32(-1e9)
        merged_scores = np.concatenate((beam_scores, scores), axis=1)
        best = _topk(merged_scores, nb)
        sequences = _gather(np.concatenate((sequences, top_running), axis=1), best)
        beam_scores = _gather(merged_scores, best)
        beam_indices = _gather(np.concatenate((beam_indices, top_idx), axis=1), best)
        finished = _gather(np.concatenate((finished, just_finished), axis=1), best)

        stepper.reorder(running_idx[:, :, cur_len - prompt_len].reshape(-1))
        cur_len += 1
        length = (max_length - prompt_len) if (es == "never" and lp > 0.0) else (cur_len - prompt_len)
        best_running = running_scores[:, :1] / np.float32(length**lp)
        worst_finished = np.where(finished, beam_scores.min(axis=1, keepdims=True), np.float32(-1e9))
        improvable = improvable & (best_running > worst_finished).any(axis=-1, keepdims=True)
        if not (improvable.any() and not (finished.all() and es is True) and not hits.all()):
            break
        if on_token is not None:
            live = improvable & ~(finished.all(axis=-1, keepdims=True) & (es is True))
            finished_len = prompt_len + (beam_indices != -1).sum(axis=-1)
            agreed = _agreed_until(running, np.broadcast_to(live, (batch, nb)), sequences, finished, finished_len,
                                   streamed, cur_len)
            for position in range(streamed, agreed):
                on_token(running[:, 0, position].copy())
            streamed = agreed
        logits = stepper.step(running[:, :, cur_len - 1 : cur_len].reshape(batch * nb, 1))

    generated = int(((beam_indices[:, 0, :] + 1) != 0).sum(axis=1).max())
    result = sequences[:, 0, : prompt_len + generated]
    for position in range(streamed, result.shape[1]) if on_token is not None else ():
        on_token(result[:, position].copy())
    return result


def _continuation(source: Sequence[int], context: Sequence[int], max_match: int, after: int) -> int | None:
    """Where in ``source`` the tokens after the longest matched suffix of ``context`` start (None: no match)."""
    if not context:
        return 0
    for length in range(min(max_match, len(context)), 0, -1):
        pattern = list(context[-length:])
        starts = [i + length for i in range(len(source) - length) if list(source[i : i + length]) == pattern]
        if starts:
            return next((i for i in starts if i >= after), starts[0])
    return None


def draft_from_input(source: Sequence[int], context: Sequence[int], n: int, max_match: int = 8,
                     after: int = 0) -> list[int]:
    """Up to ``n`` tokens of ``source`` that follow the longest suffix of ``context`` (at most ``max_match``
    tokens) found in it; the first match continuing at or after ``after`` wins, else the first. An empty
    context drafts the source's start; no match drafts nothing.

    Example:
        >>> draft_from_input([5, 6, 7, 8, 9], [1, 6, 7], 2)
        [8, 9]
        >>> draft_from_input([5, 6, 7], [], 2), draft_from_input([5, 6, 7], [4], 2)
        ([5, 6], [])
    """
    start = _continuation(source, context, max_match, after)
    return [] if start is None else list(source[start : start + n])


def greedy_with_input_draft(
    stepper: DraftStepper, prompt: np.ndarray, cfg: GenerationConfig, source: Sequence[int], draft_tokens: int,
    context_from: int, on_token: TokenCallback | None = None,
) -> tuple[np.ndarray, DraftStats]:
    """Greedy decoding of one row with input-guided aggressive decoding: after each chosen token, draft up to
    ``draft_tokens`` tokens copied from ``source`` (:func:`draft_from_input` over the sequence from
    ``context_from`` on), feed the chosen token and the draft in one decoder call, keep the draft's prefix that
    greedy would have chosen (every position's logits are checked), and roll the cache back to it. After a
    rejection the next draft is only the accepted prefix + 1 long (it grows by 2 after each fully accepted
    one), so a model that does not copy pays for short blocks. The tokens are greedy's; only the number of
    decoder calls changes.
    """
    assert prompt.shape[0] == 1 and not cfg.do_sample and cfg.num_beams == 1, "greedy, one row"
    sequence = [int(t) for t in np.asarray(prompt)[0]]
    prompt_len = len(sequence)
    max_length = prompt_len + cfg.max_new_tokens
    eos = set(cfg.eos_token_id)
    drafted = accepted = calls = 0
    after = 0
    length = draft_tokens  # back off to the accepted prefix + 1 after a rejection, +2 after a full acceptance

    def choose(logits: np.ndarray) -> int:
        return int(_process(logits[None].astype(np.float32, copy=True), len(sequence), max_length, prompt_len,
                            cfg)[0].argmax())

    def emit(token: int) -> bool:
        """Append ``token``; True when generation ends with it."""
        sequence.append(token)
        if on_token is not None:
            on_token(np.array([token], np.int64))
        return token in eos or len(sequence) >= max_length

    logits = stepper.step(np.asarray(prompt, np.int64))[0]
    calls += 1
    fed = prompt_len
    while True:
        token = choose(logits)
        if emit(token):
            break
        room = max_length - len(sequence)  # tokens still allowed after this one
        start = _continuation(source, sequence[context_from:], 8, after)
        draft = [] if start is None else [int(t) for t in source[start : start + min(length, room)]]
        block = np.array([[token, *draft]], np.int64)
        step_logits = stepper.step(block)
        calls += 1
        fed += block.shape[1]
        drafted += len(draft)
        if not draft:
            logits = step_logits[0]
            continue
        block_logits = stepper.last_logits[0]
        kept, done = 0, False
        for j, guess in enumerate(draft):
            if choose(block_logits[j]) != guess:
                break
            kept += 1
            if emit(guess):
                done = True
                break
        accepted += kept
        if done:
            break
        length = min(draft_tokens, length + 2) if kept == len(draft) else kept + 1
        after = start + kept  # the next match is looked for from where this copy stopped
        stepper.truncate(fed - (len(draft) - kept))
        fed -= len(draft) - kept
        logits = block_logits[kept]
    stats = DraftStats(drafted, accepted, calls, len(sequence) - prompt_len)
    return np.array([sequence], np.int64), stats


def generate_tokens(
    stepper: Stepper, prompt: np.ndarray, cfg: GenerationConfig, on_token: TokenCallback | None = None
) -> np.ndarray:
    """Run the decoding ``cfg`` asks for; ``on_token(tokens[batch])`` is called once per new position.

    Greedy and sampling pass each token on as it is chosen; beam search passes on the best beam's
    tokens once they are settled (see :func:`beam_search`). Either way the streamed tokens are the
    returned ones after the prompt.
    """
    if cfg.num_beams > 1:
        return beam_search(stepper, prompt, cfg, on_token)
    return greedy_or_sample(stepper, prompt, cfg, on_token)
