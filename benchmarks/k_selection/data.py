"""The data sets of the study, each with its true K, candidate Ks and fit settings: Gaussian blobs
(feature vectors, MLP encoder) and scikit-learn's 8x8 digits, all or some of the classes (digits preset)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import load_digits, make_blobs

from benchmarks.digits.__main__ import DIGITS_CONFIG
from imc_cluster import IMCSwAVClustering

#: settings of the blob fits: a small MLP encoder (hidden width 8 x 16) and head, few epochs
BLOBS_CONFIG = {
    "backbone": "mlp",
    "backbone_width": 16,
    "head_hidden_dim": 256,
    "n_prototypes": 100,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "warmup_updates": 20,
    "device": "cpu",
}
#: cluster heads per fit: their agreement is the stability criterion
N_HEADS = 3
#: the seed of every fit
SEED = 0


@dataclass
class Study:
    """One data set of known K, the candidates to choose from and the estimator's settings."""

    name: str
    X: np.ndarray
    y: np.ndarray
    candidates: list[int]
    config: dict = field(default_factory=dict)

    @property
    def true_k(self) -> int:
        """The number of classes."""
        return int(np.unique(self.y).shape[0])

    def fit(self, n_clusters: int | list[int]) -> IMCSwAVClustering:
        """The estimator of the study's settings with ``n_clusters`` (a K, or candidates), fitted on ``X``
        with :data:`SEED`; its warnings (a short warm-up, a batch that leaves samples out) are expected."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = IMCSwAVClustering(**{**self.config, "n_clusters": n_clusters, "random_state": SEED})
            return estimator.fit(self.X)


def blobs(n_centers: int, n_features: int, candidates: list[int], epochs: int, n_samples: int) -> Study:
    """Well-separated isotropic Gaussian blobs (unit spread, centres in [-10, 10] per dimension)."""
    X, y = make_blobs(n_samples, n_features, centers=n_centers, random_state=n_centers)
    config = {**BLOBS_CONFIG, "max_epochs": epochs, "n_heads": N_HEADS}
    return Study(f"blobs K={n_centers}, {n_features}-d, {n_samples} samples", X, y, candidates, config)


def digits(classes: int, candidates: list[int], epochs: int, scaled: bool = False) -> Study:
    """The digits 0 to ``classes - 1`` as 8x8 images, with the digits preset's settings but ``epochs``
    epochs: with ``scaled``, the preset's warm-up and its learning-rate milestones scaled to ``epochs``;
    else a warm-up of 10 updates (and milestones beyond the fit)."""
    X, y = load_digits(return_X_y=True)
    keep = y < classes
    if scaled:
        fraction = epochs / DIGITS_CONFIG["max_epochs"]
        schedule = {"lr_milestones": tuple(round(m * fraction) for m in DIGITS_CONFIG["lr_milestones"])}
    else:
        schedule = {"warmup_updates": 10}
    config = {**DIGITS_CONFIG, "max_epochs": epochs, **schedule, "n_heads": N_HEADS}
    name = f"digits 0-{classes - 1}, {int(keep.sum())} images"
    return Study(name, X[keep], y[keep], candidates, config)


#: the candidate Ks of each digits subset, by its number of classes
DIGITS_CANDIDATES = {3: [2, 3, 4, 5, 6], 5: [3, 4, 5, 6, 8], 7: [5, 6, 7, 8, 9], 10: [7, 9, 10, 11, 13]}
#: the blobs of the study: (centres, dimensions)
BLOBS = ((3, 16), (5, 24), (8, 32))
#: epochs of the separate-fit study's digits fits, by number of classes (fewer for more images)
SHORT_EPOCHS = {3: 15, 5: 9, 7: 6, 10: 5}
#: epochs of the candidates study's digits fits: half the digits preset's schedule
SCALED_EPOCHS = 75


def studies(quick: bool, candidates: bool = False) -> list[Study]:
    """The study's data sets; ``quick`` gives two small ones with three candidates each (a smoke test).
    The digits fits are short (:data:`SHORT_EPOCHS`), or, for the study through the estimator's choice
    (``candidates``), half the digits preset's schedule (:data:`SCALED_EPOCHS`)."""
    if quick:
        return [blobs(3, 16, [2, 3, 4], 10, 300), digits(3, [2, 3, 4], 2)]
    return [
        *(blobs(k, d, list(range(2, 13)), 15, 600) for k, d in BLOBS),
        *(
            digits(classes, ks, SCALED_EPOCHS, scaled=True)
            if candidates
            else digits(classes, ks, SHORT_EPOCHS[classes])
            for classes, ks in DIGITS_CANDIDATES.items()
        ),
    ]
