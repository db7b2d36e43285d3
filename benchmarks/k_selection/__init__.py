"""Which label-free criterion picks the number of clusters K, on data of known K:
``python -m benchmarks.k_selection``."""
