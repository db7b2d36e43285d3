"""Views through one network pass: the layers that take the view count, and the image-major layout.

All views of one crop size go through the network together, laid out *image-major* (sample ``b * V + v`` is
view ``v`` of image ``b``), and the view count ``V`` travels as an explicit argument to the layers that need
it (:mod:`imc_cluster.model.batchnorm`), never as global state.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PerView", "ViewSequential", "image_major", "run_layers"]


class PerView:
    """Marker of the modules whose ``forward`` takes ``(x, n_views)``."""


def run_layers(layers, x: torch.Tensor, n_views: int) -> torch.Tensor:
    """Apply ``layers`` in order, passing ``n_views`` to those that take it (:class:`PerView`)."""
    for layer in layers:
        x = layer(x, n_views) if isinstance(layer, PerView) else layer(x)
    return x


class ViewSequential(nn.Sequential, PerView):
    """``nn.Sequential`` that passes the view count to the layers that take it (same state-dict keys)."""

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        return run_layers(self, x, n_views)


def image_major(group: torch.Tensor, n_views: int) -> torch.Tensor:
    """Reorder a view-major group ``(V * B, ...)`` (sample ``v * B + b``) to image-major order (sample
    ``b * V + v``), keeping its memory format (a channels-last group stays channels-last)."""
    if n_views == 1:
        return group
    out = torch.empty_like(group)
    out.unflatten(0, (-1, n_views)).copy_(group.unflatten(0, (n_views, -1)).transpose(0, 1))
    return out
