"""Frozen configs of edgekit's own small language models (encoder-decoder and decoder-only, RoPE).

Both kinds are built from the same pre-norm blocks, so a decoder-only baseline can be sized to the
parameter count of an encoder-decoder model (:func:`matched_decoder_only`).

Example:
    >>> cfg = SlmConfig.encoder_decoder(d_model=64, layers=3, ratio=(2, 1))
    >>> (cfg.encoder_layers, cfg.decoder_layers)
    (2, 1)
    >>> base = matched_decoder_only(cfg)
    >>> base.kind, abs(base.parameter_count() / cfg.parameter_count() - 1) < 0.02
    ('decoder-only', True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from edgekit.runtimes.errors import UsageError

__all__ = ["SlmConfig", "matched_decoder_only", "KINDS", "PAD_ID", "BOS_ID", "EOS_ID", "SEP_ID", "BYTE_OFFSET"]

KINDS = ("encoder-decoder", "decoder-only")
# Token ids of the built-in byte-level tokenizer (runtimes/tokenizer.py): 4 specials, then 256 bytes.
PAD_ID, BOS_ID, EOS_ID, SEP_ID = 0, 1, 2, 3
BYTE_OFFSET = 4
BYTE_VOCAB = BYTE_OFFSET + 256


@dataclass(frozen=True)
class SlmConfig:
    """Sizes of one model. ``encoder_layers`` is 0 for a decoder-only model."""

    kind: str = "encoder-decoder"
    vocab_size: int = BYTE_VOCAB
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 2
    max_length: int = 2048  # longest input (+ output for decoder-only) the runtime accepts
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    pad_token_id: int = PAD_ID
    bos_token_id: int = BOS_ID
    eos_token_id: int = EOS_ID
    sep_token_id: int = SEP_ID

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"SlmConfig.kind {self.kind!r} is not one of {KINDS}")
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "decoder_layers", "max_length"):
            if getattr(self, name) < 1:
                raise UsageError(f"SlmConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise UsageError(
                f"SlmConfig.d_model {self.d_model} must split into {self.n_heads} heads of an even size (RoPE)"
            )
        if self.kind == "encoder-decoder" and self.encoder_layers < 1:
            raise UsageError("SlmConfig.encoder_layers must be >= 1 for an encoder-decoder model")
        if self.kind == "decoder-only" and self.encoder_layers != 0:
            raise UsageError("SlmConfig.encoder_layers must be 0 for a decoder-only model")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def encoder_decoder(cls, layers: int = 6, ratio: tuple[int, int] = (2, 1), **sizes: Any) -> "SlmConfig":
        """An encoder-decoder config with ``layers`` blocks split encoder:decoder by ``ratio`` (default 2:1)."""
        enc, dec = ratio
        if enc < 1 or dec < 1:
            raise UsageError(f"encoder:decoder ratio must be two positive integers, got {ratio}")
        decoder_layers = max(1, round(layers * dec / (enc + dec)))
        encoder_layers = max(1, layers - decoder_layers)
        return cls(kind="encoder-decoder", encoder_layers=encoder_layers, decoder_layers=decoder_layers, **sizes)

    def layer_parameters(self, stack: str) -> int:
        """Parameters of one block: attention 4 d^2, SwiGLU MLP 3 d d_ff, norms; decoder blocks add cross-attention."""
        d = self.d_model
        block = 4 * d * d + 3 * d * self.d_ff + 2 * d
        if stack == "decoder" and self.kind == "encoder-decoder":
            block += 4 * d * d + d
        return block

    def parameter_count(self) -> int:
        """Trainable parameters (embedding tied with the LM head)."""
        embed = self.vocab_size * self.d_model
        norms = self.d_model * (2 if self.kind == "encoder-decoder" else 1)
        return (
            embed
            + norms
            + self.encoder_layers * self.layer_parameters("encoder")
            + self.decoder_layers * self.layer_parameters("decoder")
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SlmConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"SlmConfig: unknown field {unknown[0]!r}")
        return cls(**dict(data))


def matched_decoder_only(config: SlmConfig) -> SlmConfig:
    """The decoder-only config of the same width and parameter count as ``config`` (within about 1%).

    Depth is the closest whole number of blocks; the MLP width ``d_ff`` (a multiple of 8) then absorbs
    the remainder.
    """
    target = config.parameter_count()
    base = replace(config, kind="decoder-only", encoder_layers=0, decoder_layers=1)
    layers = min(
        range(1, 4 * (config.encoder_layers + config.decoder_layers) + 2),
        key=lambda n: abs(replace(base, decoder_layers=n).parameter_count() - target),
    )
    d = config.d_model
    fixed = replace(base, decoder_layers=layers, d_ff=8).parameter_count() - layers * 3 * d * 8
    d_ff = max(8, int(round((target - fixed) / (3 * d * layers) / 8)) * 8)
    return replace(base, decoder_layers=layers, d_ff=d_ff)
