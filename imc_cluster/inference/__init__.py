"""Inference: a fitted network's outputs on encoded inputs, batch by batch, in evaluation mode.

May import :mod:`imc_cluster.model`, :mod:`imc_cluster.data` and :mod:`imc_cluster.core`.
"""
