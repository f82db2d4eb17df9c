"""Tokenizers for generation bundles: a built-in byte-level one and Hugging Face ``tokenizers`` files.

edgekit's own SLMs read UTF-8 bytes (ids 4..259; 0 pad, 1 bos, 2 eos, 3 sep). A Hugging Face model's
``tokenizer.json`` is copied into its bundle and read with the ``tokenizers`` library (an optional
dependency: ``pip install 'edgekit[slm]'``).

Example:
    >>> tok = ByteTokenizer(suffix=(2,))
    >>> tok.encode("hi")
    [108, 109, 2]
    >>> tok.decode([108, 109, 2])
    'hi'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .bundle import bundle_member
from .errors import BundleError, require

__all__ = ["ByteTokenizer", "HFTokenizer", "load_tokenizer", "BYTE_OFFSET"]

BYTE_OFFSET = 4


class ByteTokenizer:
    """UTF-8 bytes shifted by 4; ``prefix``/``suffix`` ids frame every encoded text."""

    def __init__(self, prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> None:
        self.prefix = [int(i) for i in prefix]
        self.suffix = [int(i) for i in suffix]
        self.vocab_size = BYTE_OFFSET + 256

    def encode(self, text: str) -> list[int]:
        return self.prefix + [b + BYTE_OFFSET for b in text.encode("utf-8")] + self.suffix

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        data = bytes(int(i) - BYTE_OFFSET for i in ids if BYTE_OFFSET <= int(i) < BYTE_OFFSET + 256)
        return data.decode("utf-8", errors="replace")


class HFTokenizer:
    """A ``tokenizer.json`` read with the ``tokenizers`` library."""

    def __init__(self, path: str | Path) -> None:
        tokenizers = require("tokenizers", "slm")
        try:
            self._tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:
            raise BundleError(f"{path}: not a readable tokenizer.json ({exc})") from exc
        self.vocab_size = self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)


def load_tokenizer(bundle_path: Path, info: Mapping[str, Any]):
    """The tokenizer a bundle's manifest describes (``extra.tokenizer``); raises if it has none.

    Its files must lie inside the bundle (``read_bundle`` has checked that they are listed and verified).
    """
    kind = info.get("kind", "none")
    if kind == "byte":
        return ByteTokenizer(info.get("prefix", ()), info.get("suffix", ()))
    if kind == "hf":
        files = [(i, f) for i, f in enumerate(info.get("files", ())) if str(f).endswith("tokenizer.json")]
        paths = [bundle_member(bundle_path, f, f"extra.tokenizer.files[{i}]") for i, f in files]
        if not paths or not paths[0].is_file():
            raise BundleError(f"{bundle_path}: tokenizer file {files[0][1] if files else 'tokenizer.json'} is missing")
        return HFTokenizer(paths[0])
    raise BundleError(
        f"{bundle_path}: the bundle has no tokenizer (the model directory had no tokenizer.json); "
        "pass token ids instead of text"
    )
