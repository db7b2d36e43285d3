"""The three IMC-SwAV objectives: SwAV self-labelling, mutual information for the cluster head, and the
logit penalty.

All three are computed in float32 (float64 for float64 inputs), whatever autocast is active, so that the
exponentials of the Sinkhorn-Knopp step and the logarithms of the mutual information stay finite under bf16
training.
Sinkhorn-Knopp runs in the log domain: it is the same iteration as ``Q <- diag(1/r) Q diag(1/c)`` on
``exp(u / eps)`` but never forms the exponential, so no score can overflow or underflow to a zero row.

Every function that normalises over the batch takes an optional ``group``: a ``torch.distributed``
process group whose members each hold a slice of the global batch. With a group, the batch-wide sums
(the Sinkhorn column marginals and the joint distribution of the mutual information) are all-reduced, so
every process computes codes and losses over the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from imc_cluster.model.collectives import all_reduce_with_grad

__all__ = [
    "sinkhorn",
    "swav_loss",
    "mutual_information_loss",
    "mutual_information_losses",
    "logit_penalty",
]

_EPS = torch.finfo(torch.float32).eps


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or float64 when it is float64 (whose precision tests compare at)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def _distributed(group) -> bool:
    return group is not None and dist.is_available() and dist.is_initialized()


def _all_reduce(tensor: torch.Tensor, group, op=None) -> torch.Tensor:
    """Sum (or ``op``) ``tensor`` over ``group``; the identity without a group."""
    if _distributed(group):
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM, group=group)
    return tensor


def _global_batch_size(local: int, like: torch.Tensor, group) -> int | torch.Tensor:
    """The sum of the batch sizes ``local`` over the group: a tensor on the device and of the dtype of
    ``like`` with a group, so that the host never waits for the device; ``local`` without."""
    if not _distributed(group):
        return local
    return _all_reduce(like.new_tensor(float(local)), group)


def _log(value: int | torch.Tensor) -> float | torch.Tensor:
    return torch.log(value) if isinstance(value, torch.Tensor) else math.log(value)


def _logsumexp_over_batch(log_q: torch.Tensor, group) -> torch.Tensor:
    """``log sum_b exp(log_q[..., b, k])`` over the (global) batch axis -2, for every prototype ``k``."""
    peak = log_q.amax(dim=-2, keepdim=True)
    peak = _all_reduce(peak, group, dist.ReduceOp.MAX if _distributed(group) else None)
    total = _all_reduce((log_q - peak).exp_().sum(dim=-2, keepdim=True), group)
    return peak + total.log_()


def _stacked(views: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Per-view outputs as one ``(n_views, batch, n)`` tensor (a 3-D tensor is taken as it is)."""
    if isinstance(views, torch.Tensor):
        if views.dim() != 3:
            raise ValueError(f"Expected a (n_views, batch, n) tensor, got shape {tuple(views.shape)}.")
        return views
    return torch.stack(list(views))


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, n_iterations: int, group=None) -> torch.Tensor:
    """Equal-partition codes by Sinkhorn-Knopp, as in SwAV.

    Parameters
    ----------
    scores : Tensor of shape (batch, n_prototypes) or (n_views, batch, n_prototypes)
        Prototype scores ``u`` of one view (cosine similarities), or of several views, each normalised on
        its own.
    epsilon : float
        Entropic regularisation: the codes are built from ``exp(u / epsilon)``.
    n_iterations : int
        Alternating normalisations; each ends with the per-sample one.
    group : ProcessGroup, default=None
        When given, the batch is the union of every member's ``scores``.

    Returns
    -------
    codes : Tensor shaped like ``scores``, float32
        Each row sums to 1; each column sums to about ``global_batch / n_prototypes``
        (exactly so in the limit of many iterations).
    """
    log_q = _wide(scores.detach()) / epsilon
    n_prototypes = log_q.shape[-1]
    log_batch = _log(_global_batch_size(log_q.shape[-2], log_q, group))
    for _ in range(n_iterations):
        # every prototype receives 1/K' of the mass ...
        log_q = log_q.sub_(_logsumexp_over_batch(log_q, group)).sub_(math.log(n_prototypes))
        # ... and every sample 1/B of it
        log_q = log_q.sub_(torch.logsumexp(log_q, dim=-1, keepdim=True)).sub_(log_batch)
    return log_q.add_(log_batch).exp_()


def swav_loss(
    scores: Sequence[torch.Tensor] | torch.Tensor,
    n_large: int,
    temperature: float,
    epsilon: float,
    n_iterations: int,
    group=None,
) -> torch.Tensor:
    """Swapped-prediction loss: codes of each large view predicted from every other view.

    All views are handled at once: one batched Sinkhorn-Knopp for the large views and one matrix product
    for every (target, prediction) pair, so that the number of device kernels does not grow with the views.

    Parameters
    ----------
    scores : sequence of Tensor of shape (batch, n_prototypes), or Tensor (n_views, batch, n_prototypes)
        Prototype scores of every view, the ``n_large`` large views first.
    n_large : int
        Number of leading views whose Sinkhorn codes serve as targets.
    temperature : float
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
    n_views = len(scores)
    if n_views < 2 or not 1 <= n_large <= n_views:
        raise ValueError(
            f"swav_loss needs at least 2 views and 1 <= n_large <= n_views, "
            f"got {n_views} views and n_large={n_large}."
        )
    scores = _stacked(scores)
    batch = scores.shape[1]
    log_probs = F.log_softmax(_wide(scores) / temperature, dim=-1)
    codes = sinkhorn(scores[:n_large], epsilon, n_iterations, group)
    # cross_entropy[i, v] = -mean_b sum_k codes[i, b, k] log_probs[v, b, k]; the B * K' products are summed
    # in float64 (a small product), so the loss keeps float32's precision of the per-sample sums
    cross_entropy = (codes.flatten(1).double() @ log_probs.flatten(1).double().t()).to(log_probs.dtype)
    other_views = 1.0 - torch.eye(n_large, n_views, device=scores.device)
    return -(cross_entropy * other_views).sum() / (batch * n_large * (n_views - 1))


def mutual_information_loss(
    head_logits: Sequence[torch.Tensor] | torch.Tensor,
    scores: Sequence[torch.Tensor] | torch.Tensor,
    temperature: float,
    marginal_weight: float,
    group=None,
) -> torch.Tensor:
    """Mutual-information loss of the cluster head against the prototype assignments.

    For every head view ``j`` and every prototype view ``v`` the joint distribution
    ``P = softmax(y_j)^T softmax(u_v / tau)`` (normalised to sum 1) gives the term
    ``H(Y|U) - b H(Y) = sum P log(P_u / P) + b sum P log P_y``. Minimising it makes the cluster a function
    of the prototype assignment while keeping the clusters balanced. The joint distributions of all
    pairs come from one matrix product.

    Parameters
    ----------
    head_logits : sequence of Tensor of shape (batch, n_clusters), or Tensor (n_views, batch, n_clusters)
        Cluster-head logits ``y_j`` of every view.
    scores : sequence of Tensor of shape (batch, n_prototypes), or Tensor (n_views, batch, n_prototypes)
        Prototype scores ``u_v`` of every view; used without gradient.
    temperature : float
        Softmax temperature ``tau`` of the prototype assignment.
    marginal_weight : float
        Weight ``b`` of the cluster-marginal entropy.
    group : ProcessGroup, default=None
        The joint distribution is summed over the global batch of this group.

    Returns
    -------
    loss : Tensor (scalar), float32
        Mean over all ``n_views ** 2`` (head view, prototype view) pairs.
    """
    terms = _pair_terms(head_logits, scores, temperature, marginal_weight, group)
    return terms.sum() / (terms.shape[0] * terms.shape[1])


def mutual_information_losses(
    head_logits: torch.Tensor,
    scores: Sequence[torch.Tensor] | torch.Tensor,
    temperature: float,
    marginal_weight: float,
    group=None,
) -> torch.Tensor:
    """:func:`mutual_information_loss` of each of several cluster heads, all in one computation.

    Parameters
    ----------
    head_logits : Tensor (n_heads, n_views, batch, n_clusters)
        Logits of every head and view.
    scores, temperature, marginal_weight, group
        As in :func:`mutual_information_loss`, the same for every head.

    Returns
    -------
    losses : Tensor (n_heads,), float32
        Each head's mean over its ``n_views * len(scores)`` (head view, prototype view) pairs.
    """
    n_heads, n_views = head_logits.shape[:2]
    terms = _pair_terms(head_logits.flatten(0, 1), scores, temperature, marginal_weight, group)
    # a sum over dimensions, not over a flattened copy: in the order of the one-head loss's sum
    return terms.unflatten(0, (n_heads, n_views)).sum(dim=(1, 2, 3, 4)) / (n_views * terms.shape[1])


def _pair_terms(head_logits, scores, temperature: float, marginal_weight: float, group) -> torch.Tensor:
    """The summands ``(V, V', K, K')`` of every (head view, prototype view) pair's mutual-information term."""
    head_probs = F.softmax(_wide(_stacked(head_logits)), dim=-1)  # (V, B, K)
    target_probs = F.softmax(_wide(_stacked(scores).detach()) / temperature, dim=-1)  # (V', B, K')
    (n_views, batch, n_clusters), (n_targets, _, n_prototypes) = head_probs.shape, target_probs.shape
    # joint[j, v] = head_probs[j]^T target_probs[v], summed over the batch, for all pairs in one product
    joint = head_probs.transpose(1, 2).reshape(n_views * n_clusters, batch) @ target_probs.transpose(
        0, 1
    ).reshape(batch, n_targets * n_prototypes)
    if _distributed(group):
        # differentiable, unlike dist.all_reduce: the backward all-reduces the gradient too, so each process
        # gets world_size times its share of the global gradient, which the averaging of parameter gradients
        # across processes (DistributedDataParallel) turns into exactly the global gradient
        joint = all_reduce_with_grad(joint, group)
    joint = joint.view(n_views, n_clusters, n_targets, n_prototypes).transpose(1, 2)  # (V, V', K, K')
    joint = joint / joint.sum(dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    p_y = joint.sum(dim=-1, keepdim=True)
    p_u = joint.sum(dim=-2, keepdim=True)
    log_joint, log_p_y, log_p_u = (t.clamp_min(_EPS).log() for t in (joint, p_y, p_u))  # 0 log 0 = 0
    return joint * (log_p_u - log_joint + marginal_weight * log_p_y)


def logit_penalty(
    head_logits: Sequence[torch.Tensor] | torch.Tensor, weight: float, threshold: float, group=None
) -> torch.Tensor:
    """Penalty on cluster-head logits whose magnitude exceeds ``threshold``.

    Parameters
    ----------
    head_logits : sequence of Tensor of shape (batch, n_clusters), or Tensor (n_views, batch, n_clusters)
        Cluster-head logits of every view.
    weight : float
        Weight ``a`` of the penalty.
    threshold : float
        Logits within ``[-threshold, threshold]`` cost nothing.
    group : ProcessGroup, default=None
        When given, the mean is over the global batch of this group, whose members may hold slices of
        any size: each returns ``world_size`` times its slice's share of it (the average over the
        members is the global penalty, and its gradient ``world_size`` times the slice's share of the
        global gradient, as :func:`mutual_information_loss` gives).

    Returns
    -------
    loss : Tensor (scalar), float32
        ``weight * mean_b sum_k relu(|y| - threshold)``, averaged over the views.
    """
    excess = F.relu(_wide(_stacked(head_logits)).abs() - threshold).sum(dim=-1)  # (V, B)
    if not _distributed(group):
        return weight * excess.mean()
    total = _global_batch_size(excess.shape[1], excess, group)
    return weight * excess.sum() * dist.get_world_size(group) / (excess.shape[0] * total)
