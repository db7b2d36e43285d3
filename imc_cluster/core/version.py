"""The library's version, written into checkpoints."""

__version__ = "0.3.0"
