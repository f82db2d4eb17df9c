"""edgekit: export, select and run models on edge devices within a latency budget.

Importing ``edgekit`` is cheap: subpackages (``edgekit.runtimes``, ``edgekit.exporters``,
``edgekit.targets``) load only when used.

Example:
    >>> import edgekit
    >>> isinstance(edgekit.__version__, str)
    True
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("edgekit")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
