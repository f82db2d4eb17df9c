"""Error types shared by every layer of edgekit.

Every error a user can cause derives from :class:`EdgekitError`; the CLI prints its message as one
line and exits 1 (``--debug`` shows the traceback). Internal invariants use ``assert`` instead.

Example:
    >>> from edgekit.runtimes.errors import BundleError
    >>> str(BundleError("out/manifest.json: missing field 'files'"))
    "out/manifest.json: missing field 'files'"
"""

from __future__ import annotations

__all__ = [
    "EdgekitError",
    "MissingDependencyError",
    "InputMismatchError",
    "BundleError",
    "ModelLoadError",
    "TargetError",
    "ExportError",
    "ValidationError",
    "UsageError",
    "one_line",
]


class EdgekitError(Exception):
    """Base class of every error a user can cause; the message is one self-contained line."""


class UsageError(EdgekitError):
    """An option or argument value that cannot work (CLI exit code 2)."""


class MissingDependencyError(EdgekitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(f"{module} is not installed: pip install 'edgekit[{extra}]'")


class InputMismatchError(EdgekitError, ValueError):
    """Run-time inputs do not match the model's declared inputs (name, dtype, rank or size)."""


class BundleError(EdgekitError):
    """A bundle directory or its manifest is missing, malformed, or fails its sha256 check."""


class ModelLoadError(EdgekitError):
    """A model file cannot be loaded (corrupt, truncated, wrong format)."""


class TargetError(EdgekitError):
    """An unknown target, or a target profile that is malformed."""


class ExportError(EdgekitError):
    """The model cannot be exported (unsupported op, input shape that does not fit, ...)."""


class ValidationError(EdgekitError):
    """An exported model disagrees with its source beyond tolerance; the artifact is not saved."""

    def __init__(self, message: str, report: object | None = None) -> None:
        self.report = report
        super().__init__(message)


_ANSI = None


def one_line(exc: BaseException) -> str:
    """A foreign exception's message for a one-line error: its first non-empty line, terminal colour codes
    removed (torch.load's pickle errors carry both), or the exception's type when it says nothing.

    Example:
        >>> one_line(RuntimeError("\\x1b[1mWeights only load failed\\x1b[0m.\\nre-run with weights_only=False"))
        'Weights only load failed.'
        >>> one_line(KeyError())
        'KeyError'
    """
    import re

    global _ANSI
    if _ANSI is None:
        _ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def require(module: str, extra: str):
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the extra.

    Example:
        >>> np = require("numpy", "ort")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # the module itself, not one of its own broken imports
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingDependencyError(module, extra) from exc
