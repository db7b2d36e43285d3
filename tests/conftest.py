"""Shared fixtures: tiny configurations that train in well under a second."""

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering

#: a network small enough for CI: 4-channel ResNet-18, 10 prototypes, 16-unit head
TINY = dict(backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16, batch_size=16,
            max_epochs=2, warmup_updates=2, bn_recalibration_batches=2, random_state=0)


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny():
    """Factory of tiny estimators; keyword arguments override the tiny defaults."""
    return lambda **params: IMCSwAVClustering(**{**TINY, "n_clusters": 3, **params})


@pytest.fixture
def rgb_images():
    """24 random 12x12 RGB uint8 images (N, H, W, C) with three 'classes' of brightness."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    images = rng.integers(0, 80, size=(24, 12, 12, 3)) + 80 * labels[:, None, None, None]
    return images.astype(np.uint8), labels
