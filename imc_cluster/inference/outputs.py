"""Inference: a fitted network's outputs on encoded inputs, batch by batch, in evaluation mode.

Inference never switches the network between training and evaluation mode: ``fit`` leaves the network
in evaluation mode, and :func:`run` refuses one in training mode (a fit in progress). So concurrent
``predict``, ``predict_proba`` and ``transform`` calls on one estimator, from several threads, compute
exactly what sequential calls compute, and never touch its BatchNorm buffers. Autocast and gradient mode
are per thread in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from imc_cluster.data.placement import batches

__all__ = ["run", "outputs"]


@torch.no_grad()
def run(
    model: nn.Module,
    network: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    network_input: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    batch_size: int,
    bfloat16: bool,
) -> torch.Tensor:
    """``network`` (a part of ``model``) on every sample of ``data``, as one float32 CPU tensor.

    Parameters
    ----------
    model : nn.Module
        The fitted network, in evaluation mode.
    network : callable
        What to run: ``model.cluster_logits`` or ``model.encoder``.
    data : Tensor
        Encoded samples (uint8 images or float32 vectors), on any device.
    network_input : callable
        Turns a batch of ``data`` into the network's input (normalisation).
    device, batch_size : torch.device, int
        Where to run, and how many samples at a time.
    bfloat16 : bool
        Run under bf16 autocast (on CUDA); the outputs are float32 either way.

    Raises
    ------
    RuntimeError
        When ``model`` is in training mode.
    """
    if model.training:
        raise RuntimeError("The model is in training mode: inference must wait until fit has returned.")
    outputs = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
        for part in batches(data.shape[0], batch_size):
            outputs.append(network(network_input(data[part].to(device, non_blocking=True))).float())
    return torch.cat(outputs).cpu()


def outputs(
    network: Callable[[torch.Tensor], torch.Tensor],
    model: nn.Module,
    inputs,
    values: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int,
    precision: str,
) -> torch.Tensor:
    """:func:`run` for a fitted model and its input encoder ``inputs``: bf16 autocast on CUDA unless
    ``precision="float32"``, float32 on the CPU."""
    return run(
        model,
        network,
        values,
        inputs.network_input,
        device=device,
        batch_size=batch_size,
        bfloat16=device.type == "cuda" and precision != "float32",
    )
