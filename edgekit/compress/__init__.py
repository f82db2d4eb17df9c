"""Compression of torch models before export: structured channel pruning (torch-pruning) to a MACs target
with uniform or sensitivity-based per-layer rates, gradual magnitude pruning on Zhu & Gupta's cubic
schedule, N:M (2:4) semi-structured sparsity, distillation fine-tuning that keeps the masks, and the
``edgekit compress`` orchestration that measures every step and exports through the pipeline
(:mod:`edgekit.compress.run`). int8 / fp16 are the pipeline's own variants, not re-implemented here.

Needs ``pip install "edgekit[compress]"`` (torch-pruning) for structured pruning only.
"""
