"""Collectives that carry gradients: the objectives and the synchronised BatchNorm of a distributed fit
sum or gather over the ranks through them, so every rank's loss sees the global batch."""

from __future__ import annotations

import warnings

import torch
from torch.distributed.nn import functional

__all__ = ["all_reduce_with_grad", "all_gather_with_grad"]


def all_reduce_with_grad(tensor: torch.Tensor, group) -> torch.Tensor:
    """The sum of ``tensor`` over the members of ``group``, differentiably: the backward sums the members'
    gradients, so each gets its share of the gradient of the sum of everyone's loss."""
    with warnings.catch_warnings():  # deprecated in favour of private functional collectives
        warnings.simplefilter("ignore", FutureWarning)
        return functional.all_reduce(tensor, group=group)


def all_gather_with_grad(tensor: torch.Tensor, group) -> torch.Tensor:
    """``tensor`` of every member of ``group``, stacked in rank order, differentiably (as
    :func:`all_reduce_with_grad`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.stack(functional.all_gather(tensor, group=group))
