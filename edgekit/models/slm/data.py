"""A synthetic asymmetric seq2seq task that needs no download: read one field out of a long record.

Input: a record of 6 to 14 ``key=value`` fields and a query, e.g.
``"qty=37;city=lima;code=x9q;name=kovar;... ?city"``; output: the queried value (``"lima"``).
The input is long and the output short: the shape of task where an encoder-decoder reads once and
writes little.

Example:
    >>> import random
    >>> src, tgt = make_example(random.Random(0))
    >>> src.rsplit("?", 1)[1] + "=" + tgt in src
    True
"""

from __future__ import annotations

import random
import string
from typing import Iterator

__all__ = ["KEYS", "make_example", "make_examples", "split_seeds"]

KEYS = (
    "id", "name", "city", "qty", "code", "zip", "tag", "color", "owner", "model",
    "year", "unit", "price", "lot", "grade", "site",
)
_ALPHABET = string.ascii_lowercase + string.digits

# Seeds of the fixed splits: training draws from TRAIN_SEED, exact match is reported on HELDOUT_SEED.
TRAIN_SEED = 1234
HELDOUT_SEED = 98765


def split_seeds() -> dict[str, int]:
    return {"train": TRAIN_SEED, "heldout": HELDOUT_SEED}


def make_example(rng: random.Random, min_fields: int = 6, max_fields: int = 14) -> tuple[str, str]:
    """One (record + query, value) pair."""
    keys = rng.sample(KEYS, rng.randint(min_fields, max_fields))
    values = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(2, 6))) for _ in keys]
    query = rng.randrange(len(keys))
    record = ";".join(f"{k}={v}" for k, v in zip(keys, values))
    return f"{record} ?{keys[query]}", values[query]


def make_examples(count: int, seed: int) -> Iterator[tuple[str, str]]:
    """``count`` examples from a seeded generator (the same seed gives the same examples)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield make_example(rng)
