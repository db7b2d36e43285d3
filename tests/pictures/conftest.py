"""What the tests of the pictures share: matplotlib's Agg backend, figures closed after every test, the check
that a figure saves as a PNG, and one tiny real fit."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.output import EpochLog


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _saves_png(figure, path: Path) -> None:
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[0] > 50


@pytest.fixture
def saves_png():
    """``saves_png(figure, path)`` checks that ``figure`` saves as a PNG image at ``path``."""
    return _saves_png


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny real fit on 96 digits (one epoch, evaluated), its history written by the CLI's epoch log:
    (estimator, uint8 images, true labels, output folder)."""
    torch.set_num_threads(2)
    digits = load_digits()
    images = (digits.images[:96] * 15.9).astype(np.uint8)
    y = digits.target[:96]
    output_dir = tmp_path_factory.mktemp("run")
    est = IMCSwAVClustering(
        n_clusters=10,
        backbone_width=4,
        n_prototypes=10,
        projection_dim=8,
        head_hidden_dim=16,
        batch_size=48,
        max_epochs=1,
        warmup_updates=2,
        bn_recalibration_batches=2,
        random_state=0,
        device="cpu",
    )
    est.fit(images, eval_set=(images, y), callbacks=[EpochLog(output_dir, 1)])
    return est, images, y, output_dir
