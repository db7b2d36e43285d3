"""Training: the trainer (one optimiser step on the three objectives), the step's loss terms, the epoch
loop and what each epoch reports, the STL-10 head bank, BatchNorm re-estimation, and training over several
processes (``torchrun``).

May import :mod:`imc_cluster.model`, :mod:`imc_cluster.data`, :mod:`imc_cluster.augmentation` and
:mod:`imc_cluster.core`.
"""
