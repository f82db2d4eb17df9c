"""Encoder-decoder generation bundles (task "seq2seq"): the encoder runs once, the decoder per token.

:func:`open_bundle` is the task loader ``edgekit.runtimes.load`` calls for such bundles. The session
it returns runs the generation loops of :mod:`edgekit.runtimes.generate` over the bundle's graphs,
with the generation defaults (start/EOS/pad tokens, forced tokens) recorded in the manifest.

Example:
    >>> import edgekit.runtimes as rt                                  # doctest: +SKIP
    >>> lm = rt.load("t5-bundle", threads=1)                           # doctest: +SKIP
    >>> lm.generate([[5, 6, 7]], max_new_tokens=8, num_beams=4)        # doctest: +SKIP
    array([[0, 12, 40, 7, 1]])
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .bundle import Bundle
from .errors import BundleError, InputMismatchError, UsageError
from .generate import DraftStats, GenerationConfig, generate_tokens, greedy_with_input_draft
from .loading import load_graph
from .session import Session

__all__ = ["open_bundle", "LMSession", "Seq2SeqSession", "as_batch"]


def as_batch(input_ids: Any, attention_mask: Any, pad_id: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (one sequence, a list of sequences of any lengths, or a 2-D array) -> padded ids and mask.

    Example:
        >>> ids, mask = as_batch([[5, 6, 7], [8]], None, pad_id=0, left=False)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    if isinstance(input_ids, np.ndarray) and input_ids.ndim == 2:
        rows = [list(r) for r in input_ids]
    elif isinstance(input_ids, np.ndarray) and input_ids.ndim == 1:
        rows = [list(input_ids)]
    elif isinstance(input_ids, Sequence) and input_ids and all(isinstance(r, (Sequence, np.ndarray)) for r in input_ids):
        rows = [list(r) for r in input_ids]
    elif isinstance(input_ids, Sequence):
        rows = [list(input_ids)]
    else:
        raise InputMismatchError(f"input_ids: expected a list or array of token ids, got {type(input_ids).__name__}")
    if not rows or any(len(r) == 0 for r in rows):
        raise InputMismatchError("input_ids is empty: give at least one token per sequence")
    try:
        rows = [[int(t) for t in r] for r in rows]
    except (TypeError, ValueError):
        raise InputMismatchError("input_ids: token ids must be integers") from None
    if attention_mask is not None:
        mask = np.asarray(attention_mask, np.int64)
        ids = np.asarray(rows, np.int64) if len({len(r) for r in rows}) == 1 else None
        if ids is None or mask.shape != ids.shape:
            raise InputMismatchError(
                f"attention_mask: shape {mask.shape} does not match input_ids "
                f"{ids.shape if ids is not None else 'of uneven lengths'}"
            )
        if not mask.any(axis=1).all():
            raise InputMismatchError("attention_mask: a row masks every token (an empty sequence)")
        return ids, mask
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        cols = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, cols], mask[i, cols] = r, 1
    return ids, mask


def _check_graphs_agree(bundle: Bundle, producer: str, consumer: str) -> None:
    """Every tensor one graph outputs and the other takes must agree on its fixed sizes."""
    graphs = bundle.manifest.graphs
    model = bundle.manifest.extra.get("model", {})
    wanted = {s.name: s for s in graphs[consumer].inputs}
    for spec in graphs[producer].outputs:
        other = wanted.get(spec.name)
        if other is None:
            continue
        fixed = [(a, b) for a, b in zip(spec.shape, other.shape) if isinstance(a, int) or isinstance(b, int)]
        if len(spec.shape) != len(other.shape) or any(a != b for a, b in fixed):
            raise BundleError(
                f"{bundle.path}: graphs disagree on hidden size: {producer} output {spec.name!r} is "
                f"{spec.shape_str()} but {consumer} input expects {other.shape_str()}"
            )
    for spec in graphs[consumer].inputs:
        if spec.name.startswith(("past_", "cross_")) and model and tuple(spec.shape[1::2]) != (
            model.get("heads"), model.get("head_dim")
        ):
            raise BundleError(
                f"{bundle.path}: graphs disagree on hidden size: {consumer} input {spec.name!r} is {spec.shape_str()} "
                f"but the manifest says {model.get('heads')} heads of {model.get('head_dim')}"
            )


class LMSession(Session):
    """Shared by the seq2seq and causal-LM sessions: input checks, defaults, tokenizer, ``generate``."""

    left_pad = False

    def __init__(self, bundle: Bundle, inputs, outputs) -> None:
        super().__init__(inputs, outputs)
        self.bundle = bundle
        extra = bundle.manifest.extra
        for key in ("generation", "model", "tokenizer"):
            if not isinstance(extra.get(key), Mapping):
                raise BundleError(f"{bundle.path}: manifest extra.{key} is missing (not a generation bundle)")
        self.generation = dict(extra["generation"])
        self.model_info = dict(extra["model"])
        self.vocab_size = int(self.model_info["vocab_size"])
        self.max_source_length = int(self.model_info["max_source_length"])
        self._tokenizer = None
        self.last_draft_stats: DraftStats | None = None  # what draft="input" did in the last generate()

    @property
    def tokenizer(self):
        """The bundle's tokenizer (byte-level or ``tokenizer.json``); BundleError if it has none."""
        if self._tokenizer is None:
            from .tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.bundle.path, self.bundle.manifest.extra["tokenizer"])
        return self._tokenizer

    def prepare(self, input_ids: Any, attention_mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Padded, checked ids and mask (InputMismatchError for empty, too long or out-of-vocabulary ids)."""
        ids, mask = as_batch(input_ids, attention_mask, int(self.generation["pad_token_id"]), self.left_pad)
        if ids.shape[1] > self.max_source_length:
            raise InputMismatchError(
                f"input_ids: {ids.shape[1]} tokens but the model's max input length is {self.max_source_length}"
            )
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise InputMismatchError(
                f"input_ids: token id {int(ids[row, col])} at [{row}, {col}] is outside the vocabulary 0..{self.vocab_size - 1}"
            )
        return ids, mask

    def config(self, **overrides: Any) -> GenerationConfig:
        """A GenerationConfig from the manifest's defaults and ``overrides`` (None means the default)."""
        g = self.generation
        values = {
            "max_new_tokens": g.get("max_new_tokens", 20),
            "num_beams": g.get("num_beams", 1),
            "length_penalty": g.get("length_penalty", 1.0),
            "early_stopping": g.get("early_stopping", False),
            "eos_token_id": tuple(g.get("eos_token_id") or ()),
            "pad_token_id": g.get("pad_token_id", 0),
            "forced_bos_token_id": g.get("forced_bos_token_id"),
            "forced_eos_token_id": g.get("forced_eos_token_id"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return GenerationConfig(**values)

    def encode(self, text: str | Sequence[str]) -> list[list[int]]:
        """Token ids of one text or a list of texts, with the bundle's tokenizer."""
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise UsageError(f"text: expected a string or a list of strings, got {type(text).__name__} {text!r:.60}")
        return [self.tokenizer.encode(t) for t in texts]

    def completions(self, sequences: np.ndarray, input_ids: Any, attention_mask: Any = None) -> list[list[int]]:
        """Each row's new tokens in ``generate(input_ids)``'s output: after the decoder start token (seq2seq)
        or after the padded prompt (causal LM)."""
        width = self._prompt_width(self.prepare(input_ids, attention_mask)[0])
        return [row[width:] for row in np.asarray(sequences).tolist()]

    def decode(self, sequences: np.ndarray, input_ids: Any, attention_mask: Any = None) -> list[str]:
        """Each row's new tokens as text (special tokens skipped)."""
        return [self.tokenizer.decode(row) for row in self.completions(sequences, input_ids, attention_mask)]

    def generate(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        *,
        text: str | Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        num_beams: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        seed: int | None = None,
        length_penalty: float | None = None,
        early_stopping: bool | str | None = None,
        on_token: Callable[[np.ndarray], None] | None = None,
        draft: str | None = None,
        draft_tokens: int = 8,
    ) -> np.ndarray | str | list[str]:
        """Generate token ids, laid out as Hugging Face ``generate()`` returns them; or text from ``text``.

        Seq2seq: ``[decoder start, new tokens...]`` per row; causal LM: the (left-padded) prompt, then
        the new tokens. Rows that stop early are padded. ``on_token(tokens[batch])`` streams each new
        position (with beams, the best beam's tokens once they are settled).

        ``text`` (a string or a list of strings, instead of ``input_ids``) is encoded with the bundle's
        tokenizer, and the new tokens come back decoded: a string, or a list of strings, as ``edgekit
        generate --text`` prints them.

        ``draft="input"`` (greedy only): input-guided aggressive decoding. Up to ``draft_tokens`` tokens copied
        from the input after the longest suffix match are verified in one decoder call and the agreed prefix
        is kept, so the tokens are plain greedy's in fewer decoder calls; ``last_draft_stats`` then holds the
        drafted / accepted counts (rows are decoded one at a time).

        Example:
            >>> import edgekit.runtimes as rt                                        # doctest: +SKIP
            >>> rt.load("out/slm").generate(text="qzzqaabbq", max_new_tokens=8)      # doctest: +SKIP
            'qab'
        """
        if (text is None) == (input_ids is None):
            raise UsageError("generate: pass either text or input_ids (one of them)")
        if text is not None:
            input_ids = self.encode(text)
        cfg = self.config(
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, length_penalty=length_penalty,
            early_stopping=early_stopping,
        )
        ids, mask = self.prepare(input_ids, attention_mask)
        if draft is None:
            stepper, prompt = self._stepper(ids, mask, cfg)
            sequences = generate_tokens(stepper, prompt, cfg, on_token)
        else:
            self._check_draft(draft, draft_tokens, cfg, ids.shape[0], on_token)
            sequences = self._draft_generate(ids, mask, cfg, draft_tokens, on_token)
        if text is None:
            return sequences
        decoded = self.decode(sequences, input_ids)
        return decoded[0] if isinstance(text, str) else decoded

    def _check_draft(self, draft: str, draft_tokens: int, cfg: GenerationConfig, rows: int, on_token) -> None:
        if draft != "input":
            raise UsageError(f"draft: expected 'input' (drafts copied from the input), got {draft!r}")
        if cfg.do_sample or cfg.num_beams > 1:
            raise UsageError("draft='input' verifies greedy tokens only: drop do_sample / num_beams > 1")
        if not isinstance(draft_tokens, (int, np.integer)) or not 1 <= draft_tokens <= self.max_source_length:
            raise UsageError(f"draft_tokens must be an integer in 1..{self.max_source_length} (the model's max "
                             f"length), got {draft_tokens!r}")
        if on_token is not None and rows != 1:
            raise UsageError("draft='input' streams (on_token) a single input only")

    def _draft_generate(self, ids: np.ndarray, mask: np.ndarray, cfg: GenerationConfig, draft_tokens: int,
                        on_token) -> np.ndarray:
        """Each row alone with input-guided drafting, laid out as the batched greedy output."""
        rows, total = [], DraftStats(0, 0, 0, 0)
        for row_ids, row_mask in zip(ids, mask):
            keep = row_mask.astype(bool)
            one_ids, one_mask = row_ids[keep][None], row_mask[keep][None]
            stepper, prompt = self._stepper(one_ids, one_mask, cfg)
            context_from = 0 if self.left_pad else 1  # causal LM: the whole text; seq2seq: after the start token
            out, stats = greedy_with_input_draft(stepper, prompt, cfg, one_ids[0].tolist(), draft_tokens, context_from,
                                                 on_token)
            new = out[0, prompt.shape[1]:]
            head = np.concatenate((row_ids[~keep], prompt[0])) if self.left_pad else prompt[0]
            rows.append(np.concatenate((head, new)))
            total = DraftStats(*(a + b for a, b in zip(
                (total.drafted, total.accepted, total.decoder_calls, total.new_tokens),
                (stats.drafted, stats.accepted, stats.decoder_calls, stats.new_tokens))))
        self.last_draft_stats = total
        length = max(len(r) for r in rows)
        pad = int(cfg.pad_token_id)
        return np.stack([np.concatenate((r, np.full(length - len(r), pad, np.int64))) for r in rows]).astype(np.int64)

    def _stepper(self, ids: np.ndarray, mask: np.ndarray, cfg: GenerationConfig):
        raise NotImplementedError

    def _prompt_width(self, ids: np.ndarray) -> int:
        """Columns of ``generate()``'s output before the new tokens, for prepared ``ids``."""
        raise NotImplementedError


class _Seq2SeqStepper:
    def __init__(self, session: "Seq2SeqSession", ids: np.ndarray, mask: np.ndarray) -> None:
        self.decoder = session.decoder
        self.present_names = session.present_names
        self.mask = mask
        self.cross = session.encoder.run({"input_ids": ids, "attention_mask": mask})
        shape = (ids.shape[0], session.heads, 0, session.head_dim)
        self.past = {name: np.zeros(shape, np.float32) for name in session.past_names}
        self.first = True

    def expand(self, n: int) -> None:
        self.mask = np.repeat(self.mask, n, axis=0)
        self.cross = {k: np.repeat(v, n, axis=0) for k, v in self.cross.items()}
        self.past = {k: np.repeat(v, n, axis=0) for k, v in self.past.items()}

    def step(self, tokens: np.ndarray) -> np.ndarray:
        feeds = {"decoder_input_ids": np.ascontiguousarray(tokens, np.int64), "encoder_attention_mask": self.mask,
                 **self.past, **self.cross}
        out = self.decoder.run(feeds) if self.first else self.decoder._run(feeds)  # inputs were checked once
        self.first = False
        self.past = {name.replace("present_", "past_", 1): out[name] for name in self.present_names}
        self.last_logits = out["logits"]
        return out["logits"][:, -1, :]

    def reorder(self, index: np.ndarray) -> None:
        self.past = {k: v[index] for k, v in self.past.items()}

    def truncate(self, length: int) -> None:
        self.past = {k: v[:, :, :length] for k, v in self.past.items()}


class _StaticSeq2SeqStepper:
    """The same steps over static-shape graphs (TFLite): the source padded to the encoder's fixed length, one
    decoder call per token with a fixed-size cache whose slot ``position`` this class writes
    (edgekit.models.slm.static describes the graphs)."""

    def __init__(self, session: "Seq2SeqSession", ids: np.ndarray, mask: np.ndarray) -> None:
        source_length = int(session.encoder.inputs[0].shape[1])
        if ids.shape[1] > source_length:
            raise InputMismatchError(f"input_ids: {ids.shape[1]} tokens but this static-shape bundle's encoder takes at "
                                     f"most {source_length} (export with the onnx format for longer inputs)")
        pad = ((0, 0), (0, source_length - ids.shape[1]))
        ids = np.pad(ids, pad, constant_values=int(session.generation["pad_token_id"]))
        self.decoder, self.mask = session.decoder, np.pad(mask, pad)
        self.cross = session.encoder.run({"input_ids": ids, "attention_mask": self.mask})
        self.past_names = session.past_names
        cache_shape = session.decoder.inputs[3].shape[1:]  # (heads, slots, head_dim)
        self.slots = int(cache_shape[1])
        self.cache = {name: np.zeros((ids.shape[0], *cache_shape), np.float32) for name in self.past_names}
        self.position = 0
        self.first = True

    def expand(self, n: int) -> None:
        self.mask = np.repeat(self.mask, n, axis=0)
        self.cross = {k: np.repeat(v, n, axis=0) for k, v in self.cross.items()}
        self.cache = {k: np.repeat(v, n, axis=0) for k, v in self.cache.items()}

    def step(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, np.int64)
        if self.position + tokens.shape[1] > self.slots:
            raise InputMismatchError(f"decoder: {self.position + tokens.shape[1]} positions but this static-shape "
                                     f"bundle's KV cache holds {self.slots} (lower max_new_tokens)")
        logits = []
        for column in range(tokens.shape[1]):
            feeds = {"decoder_input_ids": tokens[:, column : column + 1],
                     "cache_position": np.full((tokens.shape[0], 1), self.position, np.int64),
                     "encoder_attention_mask": self.mask, **self.cache, **self.cross}
            out = self.decoder.run(feeds) if self.first else self.decoder._run(feeds)  # inputs were checked once
            self.first = False
            for name in self.past_names:
                self.cache[name][:, :, self.position] = out[name.replace("past_", "new_", 1)][:, :, 0]
            self.position += 1
            logits.append(out["logits"])
        self.last_logits = np.concatenate(logits, axis=1)
        return self.last_logits[:, -1, :]

    def reorder(self, index: np.ndarray) -> None:
        self.cache = {k: v[index] for k, v in self.cache.items()}

    def truncate(self, length: int) -> None:
        self.position = length  # later slots are masked out until they are written again


class Seq2SeqSession(LMSession):
    """An encoder-decoder bundle. ``run`` gives teacher-forced logits; ``generate`` decodes."""

    backend = "generation"

    def __init__(self, bundle: Bundle, encoder: Session, decoder: Session) -> None:
        dec_ids = next((s for s in decoder.inputs if s.name == "decoder_input_ids"), None)
        if dec_ids is None:
            raise BundleError(f"{bundle.path}: the decoder graph has no input 'decoder_input_ids'")
        logits = next(s for s in decoder.outputs if s.name == "logits")
        super().__init__(bundle, (*encoder.inputs, dec_ids), (logits,))
        self.encoder, self.decoder = encoder, decoder
        self.past_names = [s.name for s in decoder.inputs if s.name.startswith("past_")]
        self.present_names = [s.name for s in decoder.outputs if s.name.startswith("present_")]
        self.heads = int(self.model_info["heads"])
        self.head_dim = int(self.model_info["head_dim"])
        static = any(s.name == "cache_position" for s in decoder.inputs)  # a fixed-size cache (TFLite)
        self._stepper_class = _StaticSeq2SeqStepper if static else _Seq2SeqStepper

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        stepper = self._stepper_class(self, feeds["input_ids"], feeds["attention_mask"])
        stepper.step(feeds["decoder_input_ids"])
        return {"logits": stepper.last_logits}

    def _stepper(self, ids, mask, cfg):
        start = int(self.generation["decoder_start_token_id"])
        return self._stepper_class(self, ids, mask), np.full((ids.shape[0], 1), start, np.int64)

    def _prompt_width(self, ids: np.ndarray) -> int:
        return 1  # the decoder start token


def open_bundle(bundle: Bundle, **options: Any) -> Seq2SeqSession:
    """Open a "seq2seq" bundle's encoder and decoder graphs (``options`` go to the backend, e.g. ``threads``)."""
    for name in ("encoder", "decoder"):
        bundle.manifest.graph(name)
    _check_graphs_agree(bundle, "encoder", "decoder")
    return Seq2SeqSession(bundle, load_graph(bundle, "encoder", **options), load_graph(bundle, "decoder", **options))
