"""Multi-crop views of a batch of uint8 images, made on their device: crop boxes, colour operations, crop
sizes, and the view generators (docs/method.md#views).

May import :mod:`imc_cluster.core` only.
"""
