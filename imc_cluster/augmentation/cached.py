"""The training views of a frozen encoder: features of views computed once, taken from the cache."""

from __future__ import annotations

import torch

from imc_cluster.core.halves import from_scaled_half

__all__ = ["EVALUATION_VIEW", "CachedViews"]

#: where a cached sample keeps the features of its un-augmented (evaluation) view; its training views follow
EVALUATION_VIEW = 0


class CachedViews:
    """The view groups of cached features: each sample ``(1 + n_large + n_small, d + 1)`` holds the
    evaluation view's features, then those of its large views, then those of its small ones, each vector
    as :func:`~imc_cluster.core.halves.to_scaled_half` keeps it.

    Parameters
    ----------
    n_large, n_small : int
        Number of large and of small views per sample.
    """

    def __init__(self, n_large: int, n_small: int) -> None:
        self.n_large, self.n_small = n_large, n_small

    def __call__(
        self, features: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """View groups of a batch ``(B, 1 + n_large + n_small, d + 1)``: one float32 tensor
        ``(n_views * B, d)`` per group, view-major (the views are the cached ones: ``generator`` draws
        nothing)."""
        if features.shape[1] != 1 + self.n_large + self.n_small:
            raise ValueError(
                f"The cached features hold {features.shape[1] - 1} views per sample, not "
                f"{self.n_large} + {self.n_small}."
            )
        bounds = [(1, 1 + self.n_large), (1 + self.n_large, 1 + self.n_large + self.n_small)]
        return [
            from_scaled_half(features[:, start:stop].transpose(0, 1).flatten(0, 1))
            for start, stop in bounds
            if stop > start
        ]
