"""Speed and memory of imc_cluster: ``python -m benchmarks.speed`` (augmentation, training step, predict and
the memory of ``fit``, and how they scale, on the CPU or a GPU, in one configuration) and
``python -m benchmarks.speed.epochs`` (full-configuration CIFAR-10 epochs and their FLOP utilisation on a
GPU)."""
