"""What the criteria read from a fitted estimator, and every criterion's score of one fit.

The glue reaches into the estimator's internals (the trainer's view generator, the network's heads), which
is why it lives here and not in :mod:`imc_cluster.criteria`, whose functions take plain arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from imc_cluster import IMCSwAVClustering, evaluate_clustering
from imc_cluster.criteria import (
    balance,
    feature_silhouette,
    normalized_information,
    stability,
    view_agreement,
)
from imc_cluster.estimator.components import augmenter
from imc_cluster.estimator.params import checked_params

#: the criteria compared, by name, in the order of the tables
CRITERIA = ("stability", "view_agreement", "normalized_information", "feature_silhouette", "balance")
#: seed of the two augmented views of :func:`two_views`
VIEW_SEED = 12345


@torch.no_grad()
def two_views(estimator: IMCSwAVClustering, X) -> tuple[np.ndarray, np.ndarray]:
    """The predicting head's soft assignments of two random training views (the first two large views)
    of every sample of ``X``."""
    values = estimator.inputs_.encode(X, estimator).values
    generator = torch.Generator().manual_seed(VIEW_SEED)
    large = augmenter(checked_params(estimator), estimator.inputs_)(values, generator)[0]
    n_samples = values.shape[0]
    views = large[:n_samples], large[n_samples : 2 * n_samples]
    return tuple(torch.softmax(estimator.model_.cluster_logits(v).double(), 1).numpy() for v in views)


@torch.no_grad()
def head_probas(estimator: IMCSwAVClustering, features: np.ndarray) -> list[np.ndarray]:
    """The soft assignments of every cluster head of the fitted network on the encoder ``features``."""
    logits = estimator.model_.head(torch.from_numpy(features))
    logits = logits.unsqueeze(0) if logits.ndim == 2 else logits
    return list(torch.softmax(logits.double(), dim=-1).numpy())


def scores(estimator: IMCSwAVClustering, X, y, features: np.ndarray) -> dict[str, float]:
    """Every criterion's score of a fitted ``estimator`` on its training data ``X`` (whose encoder features
    are ``features``), with the ACC and ARI against the true classes ``y`` for reference."""
    proba = estimator.predict_proba(X)
    view_a, view_b = two_views(estimator, X)
    truth = evaluate_clustering(y, proba.argmax(axis=1))
    return {
        "stability": stability(head_probas(estimator, features)),
        "view_agreement": view_agreement(view_a, view_b),
        "normalized_information": normalized_information(proba),
        "feature_silhouette": feature_silhouette(features, proba),
        "balance": balance(proba),
        "acc": truth["acc"],
        "ari": truth["ari"],
    }
