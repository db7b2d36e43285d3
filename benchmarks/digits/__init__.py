"""IMC-SwAV on scikit-learn's digits beside scikit-learn's own clusterers: ``python -m benchmarks.digits``."""
