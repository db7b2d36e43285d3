"""Benchmarks of imc_cluster: one subpackage per tool, each run from the repository root as a module.

    python -m benchmarks.digits         IMC-SwAV on scikit-learn's digits beside scikit-learn's clusterers
    python -m benchmarks.speed          speed and memory in one configuration (CPU or GPU)
    python -m benchmarks.speed.epochs   full-configuration CIFAR-10 epochs and FLOP utilisation on a GPU
    python -m benchmarks.distributed    collectives, bytes and scaling under torch.distributed (CPU)
    python -m benchmarks.distributed.gpu  the one-rank NCCL step beside the plain one on a GPU
    python -m benchmarks.fidelity       our training step beside the transcription of the published one
    python -m benchmarks.reproduce      seeds of ``imc-cluster train`` and ``test`` beside the published table
    python -m benchmarks.own_images     the own-photos workflow (``train``, ``predict``) on unlabelled images

What several tools share lives in :mod:`benchmarks.common`; the committed tables are under
``benchmarks/results/`` and ``benchmarks/README.md`` gives the command behind each.
"""
