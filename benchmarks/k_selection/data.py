"""The data sets of the study, each with its true K, candidate Ks and fit settings: Gaussian blobs
(feature vectors, MLP encoder) and scikit-learn's 8x8 digits, all or some of the classes (digits preset)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import load_digits, make_blobs

from benchmarks.digits.__main__ import DIGITS_CONFIG

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


def blobs(n_centers: int, n_features: int, candidates: list[int], epochs: int, n_samples: int) -> Study:
    """Well-separated isotropic Gaussian blobs (unit spread, centres in [-10, 10] per dimension)."""
    X, y = make_blobs(n_samples, n_features, centers=n_centers, random_state=n_centers)
    config = {**BLOBS_CONFIG, "max_epochs": epochs, "n_heads": N_HEADS}
    return Study(f"blobs K={n_centers}, {n_features}-d, {n_samples} samples", X, y, candidates, config)


def digits(classes: int, candidates: list[int], epochs: int) -> Study:
    """The digits 0 to ``classes - 1`` as 8x8 images, with the digits preset's settings but ``epochs``
    epochs and a warm-up of 10 updates."""
    X, y = load_digits(return_X_y=True)
    keep = y < classes
    config = {**DIGITS_CONFIG, "max_epochs": epochs, "warmup_updates": 10, "n_heads": N_HEADS}
    name = f"digits 0-{classes - 1}, {int(keep.sum())} images"
    return Study(name, X[keep], y[keep], candidates, config)


def studies(quick: bool) -> list[Study]:
    """The study's data sets; ``quick`` gives two small ones with three candidates each (a smoke test)."""
    if quick:
        return [blobs(3, 16, [2, 3, 4], 10, 300), digits(3, [2, 3, 4], 2)]
    return [
        blobs(3, 16, list(range(2, 13)), 15, 600),
        blobs(5, 24, list(range(2, 13)), 15, 600),
        blobs(8, 32, list(range(2, 13)), 15, 600),
        digits(3, [2, 3, 4, 5, 6], 15),
        digits(5, [3, 4, 5, 6, 8], 9),
        digits(7, [5, 6, 7, 8, 9], 6),
        digits(10, [7, 9, 10, 11, 13], 5),
    ]
