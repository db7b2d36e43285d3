"""The published IMC-SwAV table, reproduced through the command line's own code: ``python -m
benchmarks.reproduce``."""
