"""``python -m manyfest``."""

from manyfest.cli.main import run

run()
