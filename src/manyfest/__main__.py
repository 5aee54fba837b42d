"""``python -m manyfest``: the console script's entry (signal handlers before imports)."""

from manyfest.cli.entry import main

main()
