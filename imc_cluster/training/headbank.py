"""The head bank of STL-10 training: the labelled images of consecutive batches, for the cluster head.

With a head mask (STL-10, where about 12 of a batch of 256 images are labelled), the cluster head learns
from labelled images only, and, as in the published code, over at least one batch size of them at a time;
:class:`~imc_cluster.training.trainer.Trainer` keeps their detached features and prototype scores here until
the bank holds that many.
"""

from __future__ import annotations

import torch

__all__ = ["HeadBank"]


class HeadBank:
    """Detached features and prototype scores of the labelled images of consecutive batches.

    Attributes
    ----------
    size : int
        Images held.
    """

    def __init__(self) -> None:
        self._features: list[torch.Tensor] = []
        self._scores: list[torch.Tensor] = []
        self.size = 0

    def add(self, features: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> None:
        """Keep the masked images of a batch: ``features (B, V, d)``, ``scores (V, B, K')``, ``mask (B,)``."""
        index = mask.nonzero().squeeze(1)
        self._features.append(features.detach().index_select(0, index))
        self._scores.append(scores.detach().index_select(1, index))
        self.size += index.numel()

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything held, ``features (N, V, d)`` and ``scores (V, N, K')``, and empty the bank."""
        held = torch.cat(self._features), torch.cat(self._scores, dim=1)
        self.clear()
        return held

    def clear(self) -> None:
        """Drop everything held."""
        self._features, self._scores, self.size = [], [], 0
