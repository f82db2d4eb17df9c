"""The edgekit version: the one place it is written (pyproject.toml reads it at build time).

A plain constant rather than ``importlib.metadata.version("edgekit")``: that import costs ~30 ms at
start-up, a quarter of a device app's ``import edgekit.runtimes`` (benchmarks/cold_start.py).
"""

__version__ = "0.1.0"
