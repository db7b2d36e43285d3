"""The loss terms of one training step, from the networks' outputs.

The step's loss is the SwAV loss of the prototype scores, plus each cluster head's mutual-information loss
against the prototype assignments and the heads' logit penalties. Each head's parameters get the gradient of
its own loss alone (the heads read detached features), so their losses are summed. A network of candidate
numbers of clusters gives one group of heads per candidate; every head of every candidate is summed alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from imc_cluster.model.objectives import logit_penalty, mutual_information_losses, swav_loss
from imc_cluster.training.progress import candidate_progress_counts, progress_counts

if TYPE_CHECKING:
    from imc_cluster.training.trainer import TrainingConfig

__all__ = ["loss_terms"]


def loss_terms(
    scores: torch.Tensor,
    logits: torch.Tensor | Sequence[torch.Tensor] | None,
    config: TrainingConfig,
    group: torch.distributed.ProcessGroup | None = None,
    head_scores: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The loss terms of a step.

    Parameters
    ----------
    scores : Tensor of shape (V, B, K')
        Prototype scores of the ``V`` views of a batch of ``B`` samples, large views first.
    logits : Tensor of shape (H, V, B, K), sequence of them, or None
        The ``H`` cluster heads' logits (one tensor per candidate K, with candidates); None leaves out the
        heads' terms.
    config : TrainingConfig
        The objectives' settings (large views, temperature, Sinkhorn, marginal weight, logit penalty).
    group : ProcessGroup, default=None
        The ranks of a distributed fit, over which the objectives are computed (None: one process).
    head_scores : Tensor, default=None
        The prototype scores that the heads' terms read, when they are not ``scores`` (the head bank's).

    Returns
    -------
    terms : dict of Tensor
        "loss" (the sum) and "swav"; with ``logits`` also "mi" and "reg", sums over every head, "mi_heads",
        each head's mutual information (``(n_candidates, H)`` with candidates), and "progress", the heads'
        :func:`~imc_cluster.training.progress.progress_counts` (or
        :func:`~imc_cluster.training.progress.candidate_progress_counts`).
    """
    swav = swav_loss(
        scores,
        config.n_large_crops,
        config.temperature,
        config.sinkhorn_epsilon,
        config.sinkhorn_iterations,
        group,
    )
    if logits is None:
        return {"loss": swav, "swav": swav}
    target = scores if head_scores is None else head_scores
    if isinstance(logits, torch.Tensor):
        heads, reg = _head_terms(logits, target, config, group)
        progress = progress_counts(logits, config.n_large_crops)
    else:  # candidate Ks: every head of every candidate on its own loss
        parts = [_head_terms(candidate, target, config, group) for candidate in logits]
        heads, reg = torch.stack([part[0] for part in parts]), sum(part[1] for part in parts)
        progress = candidate_progress_counts(logits, config.n_large_crops)
    mi = heads.sum()  # the parameters of each head get the gradient of its own loss alone
    terms = {"swav": swav, "mi": mi, "reg": reg, "mi_heads": heads}
    return {"loss": swav + mi + reg, **terms, "progress": progress}


def _head_terms(
    logits: torch.Tensor, target: torch.Tensor, config: TrainingConfig, group
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's mutual-information loss ``(H,)`` and the sum of the heads' logit penalties, for logits
    ``(H, V, B, K)``."""
    heads = mutual_information_losses(logits, target, config.temperature, config.marginal_weight, group)
    # the mean over the views of every head, times the heads: the sum of the heads' penalties
    views, n_heads = logits.flatten(0, 1), logits.shape[0]
    reg = logit_penalty(views, config.logit_penalty, config.logit_threshold, group) * n_heads
    return heads, reg
