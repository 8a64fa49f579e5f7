"""The package's version, in one place (setup.py, the CLI and the FiftyOne run records read it)."""

__version__ = "0.1.0"
