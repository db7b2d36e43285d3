"""The cost of several cluster heads per training step: ``python -m benchmarks.heads``."""
