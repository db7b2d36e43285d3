"""Encoder features of the un-augmented view and of augmented training views, computed once in batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from imc_cluster.core.halves import to_scaled_half
from imc_cluster.data.placement import batches

__all__ = ["view_features"]


@torch.no_grad()
def view_features(
    encoder: nn.Module,
    augment: Callable,
    network_input: Callable[[torch.Tensor], torch.Tensor],
    values: torch.Tensor,
    out: np.ndarray,
    *,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype | None,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Write the features of every sample's views into ``out``.

    Parameters
    ----------
    encoder : nn.Module
        The (frozen) encoder, in evaluation mode, on ``device``.
    augment : callable
        ``augment(batch, generator)``: the view groups of a batch, each view-major.
    network_input : callable
        The un-augmented network input of a batch.
    values : Tensor
        Encoded samples (uint8 images), on any device.
    out : ndarray (N, 1 + V, d + 1), float16
        Receives, per sample, the features of the un-augmented view, then of its ``V`` training views, each
        as :func:`~imc_cluster.core.halves.to_scaled_half` keeps it.
    batch_size, generator, device
        Samples per pass, the source of the views' randomness, and where to run.
    dtype : torch.dtype or None
        Autocast dtype (bf16, say), or None for float32.
    on_batch : callable, optional
        Called with the number of samples of each finished batch.
    """
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for part in batches(values.shape[0], batch_size):
            batch = values[part].to(device, non_blocking=True)
            size = batch.shape[0]
            views = [network_input(batch), *augment(batch, generator)]
            features = [encoder(v).float().unflatten(0, (-1, size)).transpose(0, 1) for v in views]
            out[part] = to_scaled_half(torch.cat(features, dim=1)).cpu().numpy()
            if on_batch is not None:
                on_batch(size)
