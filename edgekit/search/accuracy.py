"""The once-for-all accuracy predictor, re-exported from :mod:`edgekit.models.ofa.predictor` where it now lives.

The search itself only needs an :class:`~edgekit.search.space.AccuracyModel` from the space
(``space.accuracy_model()``); this module keeps the old import path working.

Example:
    >>> from edgekit.models.ofa import get_space
    >>> AccuracyPredictor.load(default_predictor_path("ofa-mbv3-shapes"), get_space("ofa-mbv3-shapes")).hidden
    256
"""

from __future__ import annotations

from edgekit.models.ofa.predictor import AccuracyPredictor, FitReport, default_predictor_path, encode, kendall_tau

__all__ = ["AccuracyPredictor", "FitReport", "default_predictor_path", "encode", "kendall_tau"]
