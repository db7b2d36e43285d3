"""What the figures share: matplotlib imported only when a figure is drawn, and named as the extra to install
when it is missing."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imc_cluster import plot_cluster_gallery, plot_confusion_matrix, plot_training_curves

ROOT = Path(__file__).resolve().parents[2]
GOOD = np.zeros((4, 3, 3), np.uint8)


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plot_cluster_gallery(GOOD, [0] * 4),
        lambda: plot_confusion_matrix([0, 1], [1, 0]),
        lambda: plot_training_curves([{"loss": 1.0}]),
    ],
)
def test_missing_matplotlib_names_the_extra(monkeypatch, draw):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'imc-cluster\[plots\]'"):
        draw()


def test_importing_the_package_does_not_import_matplotlib():
    code = (
        "import sys, imc_cluster; from imc_cluster import plot_training_curves; "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
