"""The package version: one place, importing nothing (``pyproject.toml`` reads it)."""

__version__ = "0.1.0"
