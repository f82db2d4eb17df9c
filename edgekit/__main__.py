"""``python -m edgekit`` runs the command line."""

from edgekit.cli import main

main()
