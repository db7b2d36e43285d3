"""The training views of plain feature vectors: random masking and Gaussian noise, the vector counterpart of
multi-crop."""

from __future__ import annotations

import torch

__all__ = ["LARGE_VECTOR_VIEW", "SMALL_VECTOR_VIEW", "FeatureViews"]


#: (probability of masking a feature, noise standard deviation) of large and of small vector views
LARGE_VECTOR_VIEW = (0.1, 0.1)


SMALL_VECTOR_VIEW = (0.2, 0.2)


class FeatureViews:
    """Views of plain feature vectors, the analogue of multi-crop for tabular data and embeddings.

    Each view masks every (standardised) feature to 0 with a small probability and adds Gaussian noise;
    the "small" views are corrupted twice as strongly as the "large" ones.

    Parameters
    ----------
    n_large, n_small : int
        Number of lightly and strongly corrupted views.
    """

    def __init__(self, n_large: int, n_small: int) -> None:
        if n_large < 1 or n_small < 0:
            raise ValueError(
                f"FeatureViews needs n_large >= 1 and n_small >= 0, got {n_large} and {n_small}."
            )
        self.groups = [(n_large, LARGE_VECTOR_VIEW)] + ([(n_small, SMALL_VECTOR_VIEW)] if n_small else [])

    def __call__(self, vectors: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """Views of a batch ``(B, F)``: one tensor ``(n_views * B, F)`` per group, view-major."""
        out = []
        for n_views, (mask_prob, noise_std) in self.groups:
            repeated = vectors.float().repeat(n_views, 1)
            keep = torch.rand(repeated.shape, generator=generator, device=vectors.device) >= mask_prob
            noise = torch.randn(repeated.shape, generator=generator, device=vectors.device)
            out.append(repeated * keep + noise_std * noise)
        return out
