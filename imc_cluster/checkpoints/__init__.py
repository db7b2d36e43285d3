"""Checkpoint files: the format with its integrity header, atomic writes, safe reads (plain data and tensors
only) and the validation of every section.

May import :mod:`imc_cluster.core` only; what an estimator puts in the sections is
:mod:`imc_cluster.estimator.persistence`.
"""
