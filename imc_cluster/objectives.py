"""The three IMC-SwAV objectives: SwAV self-labelling, mutual information for the cluster head, and the
logit penalty.

All three are computed in float32, whatever autocast is active, so that the exponentials of the
Sinkhorn-Knopp step and the logarithms of the mutual information stay finite under bf16 training.
Sinkhorn-Knopp runs in the log domain: it is the same iteration as ``Q <- diag(1/r) Q diag(1/c)`` on
``exp(u / eps)`` but never forms the exponential, so no score can overflow or underflow to a zero row.

Every function that normalises over the batch takes an optional ``group``: a ``torch.distributed``
process group whose members each hold a slice of the global batch. With a group, the batch-wide sums
(the Sinkhorn column marginals and the joint distribution of the mutual information) are all-reduced, so
every process computes codes and losses over the global batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["sinkhorn", "swav_loss", "mutual_information_loss", "logit_penalty"]

_EPS = torch.finfo(torch.float32).eps


def _distributed(group) -> bool:
    return group is not None and dist.is_available() and dist.is_initialized()


def _all_reduce(tensor: torch.Tensor, group, op=None) -> torch.Tensor:
    """Sum (or ``op``) ``tensor`` over ``group``; the identity without a group."""
    if _distributed(group):
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM, group=group)
    return tensor


class _DifferentiableSum(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient too: with every process computing the same
    loss from the summed tensor, each gets ``world_size`` times its share of the global gradient, which the
    usual averaging of parameter gradients across processes (DistributedDataParallel) turns into exactly
    the global gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return _all_reduce(tensor.clone(), group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _all_reduce(grad.clone(), ctx.group), None


def _global_batch_size(local: int, device: torch.device, group) -> int:
    if not _distributed(group):
        return local
    size = torch.tensor([local], device=device, dtype=torch.long)
    return int(_all_reduce(size, group).item())


def _logsumexp_over_batch(log_q: torch.Tensor, group) -> torch.Tensor:
    """``log sum_b exp(log_q[b, k])`` over the (global) batch, for every prototype ``k``."""
    peak = log_q.amax(dim=0, keepdim=True)
    peak = _all_reduce(peak, group, dist.ReduceOp.MAX if _distributed(group) else None)
    total = _all_reduce((log_q - peak).exp().sum(dim=0, keepdim=True), group)
    return peak + total.log()


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, n_iterations: int = 3, group=None) -> torch.Tensor:
    """Equal-partition codes by Sinkhorn-Knopp, as in SwAV.

    Parameters
    ----------
    scores : Tensor of shape (batch, n_prototypes)
        Prototype scores ``u`` of one view (cosine similarities).
    epsilon : float, default=0.05
        Entropic regularisation: the codes are built from ``exp(u / epsilon)``.
    n_iterations : int, default=3
        Alternating normalisations; each ends with the per-sample one.
    group : ProcessGroup, default=None
        When given, the batch is the union of every member's ``scores``.

    Returns
    -------
    codes : Tensor of shape (batch, n_prototypes), float32
        Each row sums to 1; each column sums to about ``global_batch / n_prototypes``
        (exactly so in the limit of many iterations).
    """
    log_q = scores.detach().float() / epsilon
    n_prototypes = log_q.shape[1]
    batch = _global_batch_size(log_q.shape[0], log_q.device, group)
    for _ in range(n_iterations):
        # every prototype receives 1/K' of the mass ...
        log_q = log_q - _logsumexp_over_batch(log_q, group) - math.log(n_prototypes)
        # ... and every sample 1/B of it
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(batch)
    return (log_q + math.log(batch)).exp()


def swav_loss(
    scores: Sequence[torch.Tensor],
    n_large: int = 2,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    n_iterations: int = 3,
    group=None,
) -> torch.Tensor:
    """Swapped-prediction loss: codes of each large view predicted from every other view.

    Parameters
    ----------
    scores : sequence of Tensor of shape (batch, n_prototypes)
        Prototype scores of every view, the ``n_large`` large views first.
    n_large : int, default=2
        Number of leading views whose Sinkhorn codes serve as targets.
    temperature : float, default=0.1
        Softmax temperature ``tau`` of the predictions.
    epsilon, n_iterations : float, int
        Sinkhorn-Knopp settings, see :func:`sinkhorn`.
    group : ProcessGroup, default=None
        Codes are computed over the global batch of this group.

    Returns
    -------
    loss : Tensor (scalar), float32
        Mean cross-entropy over the ``n_large * (n_views - 1)`` (target, prediction) pairs.
    """
    if len(scores) < 2 or not 1 <= n_large <= len(scores):
        raise ValueError(f"swav_loss needs at least 2 views and 1 <= n_large <= n_views, "
                         f"got {len(scores)} views and n_large={n_large}.")
    log_probs = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
    terms = []
    for i in range(n_large):
        codes = sinkhorn(scores[i], epsilon, n_iterations, group)
        terms += [-(codes * log_probs[v]).sum(dim=1).mean() for v in range(len(scores)) if v != i]
    return torch.stack(terms).mean()


def _mutual_information_term(head_probs: torch.Tensor, target_probs: torch.Tensor,
                             marginal_weight: float, group) -> torch.Tensor:
    """``H(Y|U) - b H(Y)`` of one (head view, target view) pair; ``head_probs`` rows may be weighted."""
    joint = head_probs.t() @ target_probs  # (K, K'), summed over the batch
    if _distributed(group):
        joint = _DifferentiableSum.apply(joint, group)
    joint = joint / joint.sum().clamp_min(_EPS)  # all-zero weights give a zero term, not NaN
    p_y = joint.sum(dim=1, keepdim=True)
    p_u = joint.sum(dim=0, keepdim=True)
    log_joint, log_p_y, log_p_u = (t.clamp_min(_EPS).log() for t in (joint, p_y, p_u))  # 0 log 0 = 0
    return (joint * (log_p_u - log_joint)).sum() + marginal_weight * (joint * log_p_y).sum()


def mutual_information_loss(
    head_logits: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    temperature: float = 0.1,
    marginal_weight: float = 4.0,
    weights: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    """Mutual-information loss of the cluster head against the prototype assignments.

    For every head view ``j`` and every prototype view ``v`` the joint distribution
    ``P = softmax(y_j)^T softmax(u_v / tau)`` (normalised to sum 1) gives the term
    ``H(Y|U) - b H(Y) = sum P log(P_u / P) + b sum P log P_y``. Minimising it makes the cluster a function
    of the prototype assignment while keeping the clusters balanced.

    Parameters
    ----------
    head_logits : sequence of Tensor of shape (batch, n_clusters)
        Cluster-head logits ``y_j`` of every view.
    scores : sequence of Tensor of shape (batch, n_prototypes)
        Prototype scores ``u_v`` of every view; used without gradient.
    temperature : float, default=0.1
        Softmax temperature ``tau`` of the prototype assignment.
    marginal_weight : float, default=4.0
        Weight ``b`` of the cluster-marginal entropy.
    weights : Tensor of shape (batch,), default=None
        Per-sample weights of the joint distribution; 0 leaves a sample out (STL-10's unlabelled images).
    group : ProcessGroup, default=None
        The joint distribution is summed over the global batch of this group.

    Returns
    -------
    loss : Tensor (scalar), float32
        Mean over all ``n_views ** 2`` (head view, prototype view) pairs.
    """
    head_probs = [F.softmax(y.float(), dim=1) for y in head_logits]
    if weights is not None:
        head_probs = [p * weights.float()[:, None] for p in head_probs]
    target_probs = [F.softmax(u.detach().float() / temperature, dim=1) for u in scores]
    terms = [_mutual_information_term(p, q, marginal_weight, group) for p in head_probs for q in target_probs]
    return torch.stack(terms).mean()


def logit_penalty(head_logits: Sequence[torch.Tensor], weight: float = 0.01, threshold: float = 5.0,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Penalty on cluster-head logits whose magnitude exceeds ``threshold``.

    Parameters
    ----------
    head_logits : sequence of Tensor of shape (batch, n_clusters)
        Cluster-head logits of every view.
    weight : float, default=0.01
        Weight ``a`` of the penalty.
    threshold : float, default=5.0
        Logits within ``[-threshold, threshold]`` cost nothing.
    weights : Tensor of shape (batch,), default=None
        Per-sample weights of the batch mean (0 leaves a sample out).

    Returns
    -------
    loss : Tensor (scalar), float32
        ``weight * mean_b sum_k relu(|y| - threshold)``, averaged over the views.
    """
    def batch_mean(values: torch.Tensor) -> torch.Tensor:
        if weights is None:
            return values.mean()
        return (values * weights).sum() / weights.sum().clamp_min(1.0)

    terms = [batch_mean(F.relu(y.float().abs() - threshold).sum(dim=1)) for y in head_logits]
    return weight * torch.stack(terms).mean()
