"""The choice of ``n_clusters`` among candidate Ks at the end of a fit, without labels.

A fit of candidate Ks trains ``n_heads`` cluster heads for every candidate. When it ends (the BatchNorm
statistics re-estimated, the network in evaluation mode), every candidate is scored by the agreement between
the clusterings of its heads on the un-augmented training data (:func:`~imc_cluster.criteria.stability`,
the criterion that picked the true K most often in benchmarks/results/k_selection_cpu.md), the best score
is chosen (:func:`~imc_cluster.criteria.select_n_clusters`: the smallest K on a tie), and the network keeps
the heads of that candidate alone: it is then exactly a network of one K, and so are its architecture and
its optimiser state (a warm start continues the chosen K).
"""

from __future__ import annotations

import numpy as np
import torch

from imc_cluster.criteria import select_n_clusters, stability
from imc_cluster.estimator.fitted import Fitted
from imc_cluster.training.distributed import World

__all__ = ["candidate_scores", "choose_n_clusters", "candidate_labels"]


def candidate_labels(head_clusters: torch.Tensor, candidates: tuple[int, ...], n_heads: int) -> np.ndarray:
    """The clusters ``(N, n_candidates * n_heads)`` under every head (the network's ``head_clusters``) as
    ``(n_candidates, n_heads, N)`` int64 labels."""
    labels = head_clusters.long().numpy().T
    return labels.reshape(len(candidates), n_heads, -1)


def candidate_scores(labels: np.ndarray, candidates: tuple[int, ...]) -> dict[int, float]:
    """The stability of every candidate: labels ``(n_candidates, n_heads, N)`` as
    :func:`candidate_labels` gives them, each head's clustering read as a one-hot assignment."""
    scores = {}
    for n_clusters, heads in zip(candidates, labels):
        scores[int(n_clusters)] = stability(
            [np.eye(n_clusters, dtype=np.float32)[clusters] for clusters in heads]
        )
    return scores


def choose_n_clusters(params: dict, fitted: Fitted, values: torch.Tensor, world: World | None) -> None:
    """Score the candidates of ``fitted``'s network on the fit's ``values`` (rank 0's scores on every rank
    of a distributed fit), keep the chosen one's heads, and record the scores (``fitted.k_scores``), the
    chosen K in the architecture and the optimiser state of the parameters kept."""
    model = fitted.model
    candidates = model.candidates
    labels = candidate_labels(fitted.logits(params, values, "head_clusters"), candidates, model.n_heads)
    scores = candidate_scores(labels, candidates)
    if world is not None:  # a GPU's argmax may differ between ranks on near ties: every rank keeps rank 0's
        scores = world.broadcast(scores)
    chosen = select_n_clusters(scores)
    kept = candidates.index(chosen)
    before = _parameter_names(fitted)
    model.keep_candidate(chosen)
    fitted.architecture = {**fitted.architecture, "n_clusters": chosen}
    fitted.k_scores = scores
    renamed = {name: _candidate_name(name, kept) for name in _parameter_names(fitted)}
    fitted.training_state = _kept_optimizer_state(fitted.training_state, before, renamed)


def _parameter_names(fitted: Fitted) -> list[str]:
    """The names of the parameters that the fit trained, in the optimiser's order (without a frozen
    encoder's)."""
    network = fitted.model.on_features() if fitted.on_features else fitted.model
    return [name for name, _ in network.named_parameters()]


def _candidate_name(name: str, index: int) -> str:
    """The name that parameter ``name`` of the network of one K had among the heads of candidate ``index``."""
    return f"head.groups.{index}.{name.removeprefix('head.')}" if name.startswith("head.") else name


def _kept_optimizer_state(state: dict, before: list[str], renamed: dict[str, str]) -> dict:
    """The training ``state`` with the optimiser state of the parameters kept alone: ``before`` names the
    optimiser's parameters in its order, ``renamed`` every kept parameter (in the new order) by its name in
    ``before``."""
    if "optimizer" not in state:  # a fresh state: nothing trained yet
        return state
    index = {name: i for i, name in enumerate(before)}
    old = [index[name] for name in renamed.values()]  # the kept parameters' old indices, in the new order
    optimizer = state["optimizer"]
    groups = []
    for group in optimizer["param_groups"]:
        members = set(group["params"])
        groups.append({**group, "params": [new for new, i in enumerate(old) if i in members]})
    kept = {new: optimizer["state"][i] for new, i in enumerate(old) if i in optimizer["state"]}
    return {**state, "optimizer": {"state": kept, "param_groups": groups}}
