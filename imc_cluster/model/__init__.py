"""The networks of IMC-SwAV (ResNet and MLP encoders, projection, prototypes, one or several cluster heads),
per-view BatchNorm, the differentiable collectives, and the three objectives (docs/method.md#networks,
docs/method.md#losses).

May import :mod:`imc_cluster.core` only.
"""
