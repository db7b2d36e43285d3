"""Training under ``torch.distributed``: ``python -m benchmarks.distributed`` (the collectives and bytes of a
step, the step time of 2 gloo processes beside 1 on the CPU, and an estimate for 8 GPUs) and
``python -m benchmarks.distributed.gpu`` (the one-rank NCCL step beside the plain one, on a GPU)."""
