"""BatchNorm re-estimation: running statistics of a trained network recomputed on un-augmented data, before
every evaluation and at the end of a fit (docs/method.md#batchnorm-re-estimation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from imc_cluster.data.placement import gather

__all__ = ["recalibrate_batch_norm"]


@torch.no_grad()
def recalibrate_batch_norm(
    model: nn.Module,
    data: torch.Tensor,
    network_input: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    n_batches: int,
    seed: int,
    device: torch.device,
) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over un-augmented batches.

    The batches are the first ``n_batches`` (at most) full batches of one random order of ``data`` drawn
    from ``seed``, apart from the training's random stream: re-estimating (to evaluate during a fit, say)
    changes nothing in the training, and gives the same statistics for the same weights every time. The
    model is left in evaluation mode.

    Parameters
    ----------
    model : nn.Module
        The network (an ``IMCSwAVNet``) whose BatchNorm layers are re-estimated through its
        ``cluster_logits``.
    data : Tensor
        The encoded training data (see :func:`~imc_cluster.data.placement.gather`).
    network_input : callable
        Turns a gathered batch into the network's input (normalisation).
    batch_size, n_batches, seed, device
        Batch size, most batches used, seed of their order, and the device the model is on.
    """
    size = min(batch_size, data.shape[0])
    n_batches = min(n_batches, data.shape[0] // size)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if n_batches and norms:
        order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed)).to(data.device)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        for i in range(n_batches):
            model.cluster_logits(network_input(gather(data, order[i * size : (i + 1) * size], device)))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    model.eval()
