"""Decoder-only generation bundles (task "causal-lm"): one decoder graph with a KV cache.

Prompts are left-padded; position ids follow the attention mask, so padded rows generate as they
would alone.

Example:
    >>> import edgekit.runtimes as rt                                  # doctest: +SKIP
    >>> lm = rt.load("deconly-bundle", threads=1)                      # doctest: +SKIP
    >>> lm.generate([[1, 80, 81, 3]], max_new_tokens=8)                # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .bundle import Bundle
from .errors import BundleError, UsageError
from .loading import load_graph
from .seq2seq import LMSession, _check_graphs_agree
from .session import Session

__all__ = ["open_bundle", "CausalLMSession"]


def _positions(mask: np.ndarray) -> np.ndarray:
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int64)


class _CausalStepper:
    def __init__(self, session: "CausalLMSession", mask: np.ndarray) -> None:
        self.decoder = session.decoder
        self.present_names = session.present_names
        self.mask = mask
        shape = (mask.shape[0], session.heads, 0, session.head_dim)
        self.past = {name: np.zeros(shape, np.float32) for name in session.past_names}
        self.first = True

    def expand(self, n: int) -> None:
        self.mask = np.repeat(self.mask, n, axis=0)
        self.past = {k: np.repeat(v, n, axis=0) for k, v in self.past.items()}

    def step(self, tokens: np.ndarray) -> np.ndarray:
        if not self.first:  # new tokens are never padding
            self.mask = np.concatenate((self.mask, np.ones((self.mask.shape[0], tokens.shape[1]), np.int64)), axis=1)
        positions = _positions(self.mask)[:, -tokens.shape[1]:]
        feeds = {"input_ids": np.ascontiguousarray(tokens, np.int64), "attention_mask": self.mask,
                 "position_ids": positions, **self.past}
        out = self.decoder.run(feeds) if self.first else self.decoder._run(feeds)
        self.first = False
        self.past = {name.replace("present_", "past_", 1): out[name] for name in self.present_names}
        self.last_logits = out["logits"]
        return out["logits"][:, -1, :]

    def reorder(self, index: np.ndarray) -> None:
        self.mask = self.mask[index]
        self.past = {k: v[index] for k, v in self.past.items()}

    def truncate(self, length: int) -> None:
        self.mask = self.mask[:, :length]
        self.past = {k: v[:, :, :length] for k, v in self.past.items()}


class CausalLMSession(LMSession):
    """A decoder-only bundle. ``run`` gives the prompt's logits; ``generate`` decodes."""

    backend = "generation"
    left_pad = True

    def __init__(self, bundle: Bundle, decoder: Session) -> None:
        names = [s.name for s in decoder.inputs]
        if names[:3] != ["input_ids", "attention_mask", "position_ids"]:
            raise BundleError(f"{bundle.path}: decoder inputs {names[:3]} are not input_ids, attention_mask, position_ids")
        logits = next(s for s in decoder.outputs if s.name == "logits")
        super().__init__(bundle, decoder.inputs[:2], (logits,))
        self.decoder = decoder
        self.past_names = [n for n in names if n.startswith("past_")]
        self.present_names = [s.name for s in decoder.outputs if s.name.startswith("present_")]
        self.heads = int(self.model_info["heads"])
        self.head_dim = int(self.model_info["head_dim"])

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        stepper = _CausalStepper(self, feeds["attention_mask"])
        stepper.step(feeds["input_ids"])
        return {"logits": stepper.last_logits}

    def _stepper(self, ids, mask, cfg):
        if ids.shape[1] + cfg.max_new_tokens > self.max_source_length:
            raise UsageError(
                f"max_new_tokens {cfg.max_new_tokens}: prompt ({ids.shape[1]}) + new tokens exceed the model's "
                f"max length {self.max_source_length}"
            )
        return _CausalStepper(self, mask), ids

    def _prompt_width(self, ids: np.ndarray) -> int:
        return ids.shape[1]  # the left-padded prompt


def open_bundle(bundle: Bundle, **options: Any) -> CausalLMSession:
    """Open a "causal-lm" bundle's decoder graph (``options`` go to the backend, e.g. ``threads``)."""
    bundle.manifest.graph("decoder")
    _check_graphs_agree(bundle, "decoder", "decoder")
    return CausalLMSession(bundle, load_graph(bundle, "decoder", **options))
