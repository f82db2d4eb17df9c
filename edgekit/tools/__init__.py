"""Offline build scripts: they make the files edgekit ships (accuracy predictors, quantized LM variants).

Each is run as ``python -m edgekit.tools.NAME --help``. They sit above the export pipeline (they may
import it, the library never imports them) and beside the CLI (neither imports the other); see
docs/ARCHITECTURE.md. A family's trainer that needs only its own family stays beside it
(``python -m edgekit.models.ofa.train``, ``python -m edgekit.models.slm.train``).
"""
