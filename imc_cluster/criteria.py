"""Label-free criteria for the number of clusters ``K``: scores of a fitted clustering, higher for a better K.

Every criterion reads what a fitted model gives, as arrays: soft assignments ``proba`` (rows that are
probability distributions over the ``K`` clusters: ``predict_proba``, or the softmax of a head's logits on
augmented views), encoder features (``transform``), or several of them. Fit one model per candidate K (or
one cluster head per candidate on the same encoder: the heads train on detached features), score each with
the same criterion, and keep the candidate with the highest score (:func:`select_n_clusters`).

- :func:`stability`: how much several heads (or seeds) agree on the clustering, by mean pairwise ARI.
- :func:`view_agreement`: how often two augmented views of a sample fall in the same cluster, beyond chance.
- :func:`normalized_information`: the head's ``I(X; Y)`` over its maximum ``log K``.
- :func:`feature_silhouette`: the silhouette of the clusters on the encoder features (cosine distance).
- :func:`balance`: the entropy of the cluster sizes over its maximum ``log K``.

``python -m benchmarks.k_selection`` compares them on data of known K (benchmarks/results/k_selection_cpu.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score, silhouette_score

from imc_cluster.core.numbers import check_integer, is_integer, is_real

__all__ = [
    "stability",
    "view_agreement",
    "normalized_information",
    "feature_silhouette",
    "balance",
    "select_n_clusters",
]

#: how far a row of ``proba`` may sum from 1 (float32 softmax outputs included)
_SUM_TOLERANCE = 1e-4


def _check_proba(proba, name: str = "proba") -> np.ndarray:
    """``proba`` as a float64 array ``(n_samples, n_clusters)`` whose rows are distributions over at least
    two clusters, or a ValueError naming ``name``."""
    array = np.asarray(proba, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise ValueError(f"{name} must be 2-D (n_samples >= 1, n_clusters >= 2), got shape {array.shape}.")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must hold finite, non-negative probabilities.")
    sums = array.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > _SUM_TOLERANCE):
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(f"Every row of {name} must sum to 1, one sums to {worst:.6g}.")
    return array


def _entropy(distribution: np.ndarray) -> np.ndarray:
    """Entropy in nats along the last axis, with ``0 log 0 = 0``."""
    logs = np.log(np.where(distribution > 0, distribution, 1.0))
    return -np.sum(distribution * logs, axis=-1)


def stability(probas: Sequence) -> float:
    """Agreement between the clusterings of several heads or seeds: their mean pairwise adjusted Rand index.

    At the true K every head finds the same clusters; with too many clusters the heads split the true
    ones in different ways, and with too few they merge different ones, so both lower the agreement.

    Parameters
    ----------
    probas : sequence of array-like of shape (n_samples, n_clusters)
        At least two soft assignments of the same samples (e.g. ``predict_proba`` of fits that differ only
        in their seed, or the softmax of every cluster head of one fit). Each clustering is the argmax.

    Returns
    -------
    score : float
        Mean ARI over the pairs: 1 when all clusterings are equal up to a renaming, about 0 for
        independent ones (negative when worse than chance). Higher is better.

    Raises
    ------
    ValueError
        When fewer than two assignments are given, they cover different numbers of samples, or one is not
        a valid ``proba``.
    """
    labelings = [_check_proba(proba, f"probas[{i}]").argmax(axis=1) for i, proba in enumerate(probas)]
    if len(labelings) < 2:
        raise ValueError(f"stability needs at least two clusterings, got {len(labelings)}.")
    if len({labels.shape[0] for labels in labelings}) > 1:
        raise ValueError("Every clustering in probas must cover the same samples (as many rows).")
    pairs = itertools.combinations(labelings, 2)
    return float(np.mean([adjusted_rand_score(a, b) for a, b in pairs]))


def view_agreement(proba_a, proba_b) -> float:
    """Agreement of two augmented views of the same samples beyond chance: Cohen's kappa of their clusters.

    Parameters
    ----------
    proba_a, proba_b : array-like of shape (n_samples, n_clusters)
        Soft assignments by the same head of two random views of the same samples, row by row. Each
        view's cluster is the argmax.

    Returns
    -------
    score : float
        ``(p_o - p_e) / (1 - p_e)``, with ``p_o`` the share of samples whose two views fall in the same
        cluster and ``p_e`` that share expected by chance from the two views' cluster sizes: 1 when the
        views always agree, about 0 when they are independent, at least -1. 0 when both views put every
        sample in one and the same cluster (no agreement beyond chance is possible). Higher is better.

    Raises
    ------
    ValueError
        When the shapes differ, or either is not a valid ``proba``.
    """
    proba_a, proba_b = _check_proba(proba_a, "proba_a"), _check_proba(proba_b, "proba_b")
    if proba_a.shape != proba_b.shape:
        raise ValueError(f"proba_a and proba_b must have one shape, got {proba_a.shape} and {proba_b.shape}.")
    n_samples, n_clusters = proba_a.shape
    labels_a, labels_b = proba_a.argmax(axis=1), proba_b.argmax(axis=1)
    observed = float(np.mean(labels_a == labels_b))
    sizes_a = np.bincount(labels_a, minlength=n_clusters) / n_samples
    sizes_b = np.bincount(labels_b, minlength=n_clusters) / n_samples
    expected = float(sizes_a @ sizes_b)
    if expected >= 1.0:
        return 0.0
    return (observed - expected) / (1.0 - expected)


def normalized_information(proba) -> float:
    """The head's mutual information ``I(X; Y)`` between samples and clusters over its maximum, ``log K``.

    ``I(X; Y) = H(mean_x p(y|x)) - mean_x H(p(y|x))``, the objective of information-maximising clustering,
    high for confident assignments to balanced clusters.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_clusters)
        Soft assignments (``predict_proba``) of the samples, ``n_clusters = K >= 2``.

    Returns
    -------
    score : float
        In [0, 1]: 0 when every sample has the same distribution (uniform ones included), 1 for one-hot
        assignments to ``K`` equally sized clusters. Higher is better.

    Raises
    ------
    ValueError
        When ``proba`` is not 2-D with rows that are distributions over at least two clusters.
    """
    proba = _check_proba(proba)
    information = _entropy(proba.mean(axis=0)) - float(np.mean(_entropy(proba)))
    return float(np.clip(information / math.log(proba.shape[1]), 0.0, 1.0))


def feature_silhouette(features, proba, sample_size: int = 2000, random_state: int = 0) -> float:
    """Silhouette of the clusters on the encoder features, with the cosine distance.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Encoder features of the samples (``transform``).
    proba : array-like of shape (n_samples, n_clusters)
        Their soft assignments (``predict_proba``); each sample's cluster is the argmax.
    sample_size : int, default=2000
        Samples drawn (without replacement) to compute it: the cost grows as its square. All samples when
        there are no more.
    random_state : int, default=0
        Seed of the draw.

    Returns
    -------
    score : float
        Mean silhouette in [-1, 1]: near 1 for compact clusters far apart, near 0 for overlapping ones;
        -1 when the drawn samples fall in fewer than two clusters, or each in its own. Higher is better.

    Raises
    ------
    ValueError
        When ``features`` is not a finite 2-D array with a row per row of ``proba``, or ``proba`` is not
        valid.
    """
    labels = _check_proba(proba).argmax(axis=1)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != labels.shape[0] or not np.all(np.isfinite(features)):
        raise ValueError(
            f"features must be a finite 2-D array with one row per sample ({labels.shape[0]}), "
            f"got shape {features.shape}."
        )
    sample_size = check_integer("sample_size", sample_size, low=2)
    if not is_integer(random_state):
        raise ValueError(f"random_state must be an int, got {random_state!r}.")
    chosen = np.random.default_rng(random_state).permutation(labels.shape[0])[:sample_size]
    n_used = np.unique(labels[chosen]).shape[0]
    if not 2 <= n_used < chosen.shape[0]:
        return -1.0
    return float(silhouette_score(features[chosen], labels[chosen], metric="cosine"))


def balance(proba) -> float:
    """Evenness of the cluster sizes: the entropy of the share of samples per cluster over ``log K``.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_clusters)
        Soft assignments (``predict_proba``); each sample's cluster is the argmax.

    Returns
    -------
    score : float
        In [0, 1]: 1 when all ``K`` clusters are equally large, 0 when all samples are in one.
        Higher is better (for data whose classes are about equally large).

    Raises
    ------
    ValueError
        When ``proba`` is not 2-D with rows that are distributions over at least two clusters.
    """
    proba = _check_proba(proba)
    n_samples, n_clusters = proba.shape
    shares = np.bincount(proba.argmax(axis=1), minlength=n_clusters) / n_samples
    return float(_entropy(shares) / math.log(n_clusters))


def select_n_clusters(scores: Mapping[int, float]) -> int:
    """The candidate K with the highest score, the smallest such K on a tie.

    Parameters
    ----------
    scores : mapping of int to float
        A criterion's score for every candidate number of clusters.

    Returns
    -------
    n_clusters : int
        The chosen K.

    Raises
    ------
    ValueError
        When ``scores`` is empty, a key is not an int >= 2, or a score is not a finite number.
    """
    if not scores:
        raise ValueError("select_n_clusters needs the score of at least one candidate.")
    for n_clusters, score in scores.items():
        if not is_integer(n_clusters) or n_clusters < 2:
            raise ValueError(f"Every candidate must be an int >= 2, got {n_clusters!r}.")
        if not is_real(score) or not math.isfinite(score):
            raise ValueError(f"The score of K={n_clusters} must be a finite number, got {score!r}.")
    return int(min(scores, key=lambda n_clusters: (-scores[n_clusters], n_clusters)))
