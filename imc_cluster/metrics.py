"""Clustering metrics: accuracy under the best cluster-to-class map, top-k accuracy, NMI and ARI.

Clusters carry no names, so accuracy is measured after matching clusters to classes one-to-one with the
Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on the contingency table. With more
clusters than classes the surplus clusters stay unmatched and count as errors, as in the published protocol.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from imc_cluster.core.numbers import check_integer

__all__ = [
    "cluster_accuracy",
    "cluster_mapping",
    "top_k_cluster_accuracy",
    "evaluate_clustering",
    "information_score",
]


def _as_labels(labels, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    return array


def _check_pair(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = _as_labels(labels_true, "labels_true")
    labels_pred = _as_labels(labels_pred, "labels_pred")
    if labels_true.shape[0] != labels_pred.shape[0]:
        raise ValueError(
            f"labels_true and labels_pred have different lengths "
            f"({labels_true.shape[0]} and {labels_pred.shape[0]})."
        )
    if labels_true.shape[0] == 0:
        raise ValueError("Cannot score an empty clustering.")
    return labels_true, labels_pred


def cluster_mapping(labels_true, labels_pred) -> dict:
    """Best one-to-one map from predicted clusters to true classes.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    mapping : dict
        ``{cluster: class}`` for every matched cluster; unmatched clusters are absent.
    """
    labels_true, labels_pred = _check_pair(labels_true, labels_pred)
    classes, class_idx = np.unique(labels_true, return_inverse=True)
    clusters, cluster_idx = np.unique(labels_pred, return_inverse=True)
    table = contingency_matrix(cluster_idx, class_idx)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {clusters[r].item(): classes[c].item() for r, c in zip(rows, cols)}


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Clustering accuracy: the fraction correct under the best one-to-one cluster-to-class map.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    accuracy : float
        In [0, 1]; 1 when the clustering equals the classes up to a renaming.

    Examples
    --------
    >>> cluster_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    labels_true, labels_pred = _check_pair(labels_true, labels_pred)
    table = contingency_matrix(labels_pred, labels_true)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels_true.shape[0])


def top_k_cluster_accuracy(labels_true, proba, k: int = 5) -> float:
    """Top-k clustering accuracy.

    Clusters are matched to classes with the Hungarian map of the top-1 assignment; a sample counts as
    correct when the cluster matched to its true class is among its ``k`` most probable clusters.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    proba : array-like of shape (n_samples, n_clusters)
        Soft cluster assignments (any scores whose order ranks the clusters).
    k : int, default=5
        Number of most probable clusters that may contain the matched cluster.

    Returns
    -------
    accuracy : float
        In [0, 1]; equals :func:`cluster_accuracy` for ``k=1``.
    """
    proba = np.asarray(proba)
    if proba.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_samples, n_clusters), got shape {proba.shape}.")
    k = check_integer("k", k)
    if k > proba.shape[1]:
        raise ValueError(f"k must be between 1 and n_clusters={proba.shape[1]}, got {k}.")
    labels_true, labels_pred = _check_pair(labels_true, proba.argmax(axis=1))
    class_to_cluster = {c: cl for cl, c in cluster_mapping(labels_true, labels_pred).items()}
    matched = np.array([class_to_cluster.get(c, -1) for c in labels_true.tolist()])
    top_k = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean((top_k == matched[:, None]).any(axis=1)))


def evaluate_clustering(labels_true, labels_pred, proba=None, top_k: int | None = None) -> dict[str, float]:
    """All clustering metrics in one call.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (used for scoring only).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.
    proba : array-like of shape (n_samples, n_clusters), default=None
        Soft assignments; needed for the top-k accuracy.
    top_k : int, default=None
        When given (with ``proba``), also report ``f"top{top_k}_acc"``.

    Returns
    -------
    metrics : dict
        ``{"acc", "nmi", "ari"}`` and, with ``top_k``, ``f"top{top_k}_acc"``.
    """
    labels_true, labels_pred = _check_pair(labels_true, labels_pred)
    metrics = {
        "acc": cluster_accuracy(labels_true, labels_pred),
        "nmi": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "ari": float(adjusted_rand_score(labels_true, labels_pred)),
    }
    if top_k is not None:
        if proba is None:
            raise ValueError("top_k needs proba, the soft cluster assignments.")
        metrics[f"top{top_k}_acc"] = top_k_cluster_accuracy(labels_true, proba, k=top_k)
    return metrics


def information_score(proba: np.ndarray) -> float:
    """Mutual information ``I(X; Y) = H(mean_x p(y|x)) - mean_x H(p(y|x))`` in nats of soft assignments
    ``proba`` (n_samples, n_clusters): between 0 and ``log(n_clusters)``, high for confident, balanced
    clusters."""
    marginal = proba.mean(axis=0)
    entropy_of_mean = -np.sum(marginal * np.log(np.clip(marginal, 1e-300, None)))
    mean_entropy = -np.mean(np.sum(proba * np.log(np.clip(proba, 1e-300, None)), axis=1))
    return float(entropy_of_mean - mean_entropy)
