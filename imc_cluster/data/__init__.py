"""Inputs and data sets: every accepted form of ``X`` turned into one uint8 (or float32) tensor, image files
and folders decoded, and the named benchmark sets.

May import :mod:`imc_cluster.augmentation` (normalisation and crop sizes) and :mod:`imc_cluster.core`.
"""
