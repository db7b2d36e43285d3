"""Cluster heads: the published MLP head, and several such heads trained together in one batched pass.

The published head (docs/method.md#networks) is ``Linear(d, hidden)``, BN, ReLU, ``Linear(hidden, hidden)``,
BN, ReLU, ``Linear(hidden, K)`` (:func:`cluster_head`). :class:`ClusterHeads` holds ``H`` such heads, each
initialised on its own as the published one is, and runs them as one computation on the same input: the
first layer is one ``Linear(d, H * hidden)``, the other two are batched matrix products with weights
``(H, in, out)``, and each BatchNorm normalises ``H * hidden`` channels, i.e. every head on its own (BatchNorm
is per channel), each view on its own in training (:mod:`~imc_cluster.model.batchnorm`).
:class:`CandidateHeads` holds one :class:`ClusterHeads` per candidate number of clusters, when the fit
chooses ``K`` among several.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from imc_cluster.model.batchnorm import ViewBatchNorm1d
from imc_cluster.model.views import PerView, ViewSequential

__all__ = ["cluster_head", "ClusterHeads", "CandidateHeads"]


def cluster_head(in_features: int, hidden: int, n_clusters: int) -> ViewSequential:
    """The published cluster head: ``(N, in_features)`` features to ``(N, n_clusters)`` logits."""
    return ViewSequential(
        nn.Linear(in_features, hidden),
        ViewBatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        ViewBatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, n_clusters),
    )


class _BatchedLinear(nn.Module):
    """``n_heads`` linear layers ``(H, N, in)`` to ``(H, N, out)`` in one batched product, each initialised
    as ``nn.Linear(in, out)`` is: weights and biases uniform in ``+-1 / sqrt(in)``."""

    def __init__(self, n_heads: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_heads, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_heads, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class ClusterHeads(nn.Module, PerView):
    """``n_heads`` published cluster heads on the same features, in one batched computation.

    Parameters
    ----------
    in_features, hidden, n_clusters : int
        As in :func:`cluster_head`, for every head.
    n_heads : int
        Number ``H`` of heads.

    Attributes
    ----------
    best : Tensor (0-d, int64)
        The head that the network predicts with (``IMCSwAVNet.select_head``), saved with the weights.
    """

    def __init__(self, in_features: int, hidden: int, n_clusters: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.hidden = n_heads, hidden
        self.input = nn.Linear(in_features, n_heads * hidden)  # H independent Linear(d, hidden), as one
        self.norm1 = ViewBatchNorm1d(n_heads * hidden)
        self.middle = _BatchedLinear(n_heads, hidden, hidden)
        self.norm2 = ViewBatchNorm1d(n_heads * hidden)
        self.output = _BatchedLinear(n_heads, hidden, n_clusters)
        self.register_buffer("best", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """Logits ``(H, N, n_clusters)`` of every head on features ``(N, in_features)``; ``n_views`` as in
        :class:`~imc_cluster.model.batchnorm.ViewBatchNorm1d`."""
        h = F.relu(self.norm1(self.input(x), n_views), inplace=True)
        h = self.middle(self._per_head(h))
        h = F.relu(self.norm2(h.transpose(0, 1).reshape(x.shape[0], -1), n_views), inplace=True)
        return self.output(self._per_head(h))

    def _per_head(self, h: torch.Tensor) -> torch.Tensor:
        """``(N, H * hidden)`` channels, head-major, as ``(H, N, hidden)``."""
        return h.view(h.shape[0], self.n_heads, self.hidden).transpose(0, 1)


class CandidateHeads(nn.Module, PerView):
    """One :class:`ClusterHeads` of ``n_heads`` heads for every candidate number of clusters.

    Parameters
    ----------
    in_features, hidden : int
        As in :func:`cluster_head`, for every head.
    candidates : sequence of int
        The candidate numbers of clusters, one :class:`ClusterHeads` each (in this order).
    n_heads : int
        Heads per candidate.

    Attributes
    ----------
    candidates : tuple of int
        The candidates.
    groups : nn.ModuleList
        Their :class:`ClusterHeads`.
    """

    def __init__(self, in_features: int, hidden: int, candidates, n_heads: int) -> None:
        super().__init__()
        self.candidates, self.n_heads = tuple(int(k) for k in candidates), n_heads
        self.groups = nn.ModuleList(ClusterHeads(in_features, hidden, k, n_heads) for k in self.candidates)

    def forward(self, x: torch.Tensor, n_views: int = 1) -> tuple[torch.Tensor, ...]:
        """Logits ``(H, N, K_c)`` of the heads of every candidate ``K_c``, on features ``(N, d)``."""
        return tuple(group(x, n_views) for group in self.groups)

    def group(self, n_clusters: int) -> ClusterHeads:
        """The heads of candidate ``n_clusters``."""
        if n_clusters not in self.candidates:
            raise ValueError(
                f"{n_clusters} is not a candidate number of clusters: they are {self.candidates}."
            )
        return self.groups[self.candidates.index(n_clusters)]
