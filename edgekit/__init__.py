"""edgekit: export, select and run models on edge devices within a latency budget.

Importing ``edgekit`` is cheap: subpackages (``edgekit.runtimes``, ``edgekit.exporters``,
``edgekit.targets``) load only when used, and the version is a constant (no importlib.metadata).

Example:
    >>> import edgekit
    >>> isinstance(edgekit.__version__, str)
    True
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
