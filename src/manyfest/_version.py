"""The package version: the one place it is written.

pyproject.toml reads it from here (``[tool.hatch.version]``), so the installed distribution's
metadata, which ``manyfest --version`` prints, always agrees with it.
"""

__version__ = "0.1.0"
