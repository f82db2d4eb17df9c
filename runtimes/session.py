"""The backend-independent part of running a model: input checking and the ``run`` contract.

A backend subclasses :class:`Session` and implements one hook, ``_run``; the base owns the checks so
every backend reports a wrong input name, dtype, rank or size the same way.

Example:
    >>> import numpy as np
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> class Doubler(Session):
    ...     def _run(self, feeds):
    ...         return {"y": feeds["x"] * 2}
    >>> s = Doubler(inputs=(TensorSpec("x", ("batch", 2)),), outputs=(TensorSpec("y", ("batch", 2)),))
    >>> s.run(np.ones((1, 2), np.float32))["y"].tolist()
    [[2.0, 2.0]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping, Sequence, Union

import numpy as np

from .errors import InputMismatchError
from .spec import TensorSpec, check_inputs

__all__ = ["Session", "Feeds"]

Feeds = Union[np.ndarray, Mapping[str, np.ndarray]]


class Session(ABC):
    """A loaded model: ``run`` takes numpy arrays and returns a dict of numpy arrays."""

    backend: str = "abstract"

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        self.inputs: tuple[TensorSpec, ...] = tuple(inputs)
        self.outputs: tuple[TensorSpec, ...] = tuple(outputs)
        self._input_names = tuple(spec.name for spec in self.inputs)

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (a dict by input name, or one array for a one-input model)."""
        feeds = self._as_dict(feeds)
        check_inputs(self.inputs, feeds)
        return self._run(feeds)

    def _as_dict(self, feeds: Feeds) -> Mapping[str, np.ndarray]:
        if isinstance(feeds, np.ndarray):
            if len(self._input_names) != 1:
                raise InputMismatchError(
                    f"the model has {len(self._input_names)} inputs {list(self._input_names)}: "
                    "pass a dict by input name"
                )
            return {self._input_names[0]: feeds}
        if not isinstance(feeds, Mapping):
            raise InputMismatchError(
                f"expected a numpy array or a dict of arrays, got {type(feeds).__name__}"
            )
        return feeds

    @abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run checked feeds on the backend."""

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{s.shape_str()}:{s.dtype}" for s in self.inputs)
        return f"<{type(self).__name__} backend={self.backend} inputs=({ins})>"
