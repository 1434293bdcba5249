"""``python -m podmortem`` runs the CLI."""

from podmortem.cli.main import run

run()
