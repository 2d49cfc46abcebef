"""``python -m tournesol`` runs the command line."""

from tournesol.cli.main import app

app()
