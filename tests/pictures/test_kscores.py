"""The scores of candidate Ks on the Agg backend: the points drawn, the chosen K marked, from a dict or a
fitted estimator, and every input error."""

import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt
from sklearn.exceptions import NotFittedError

from imc_cluster import IMCSwAVClustering, plot_k_scores

SCORES = {10: 0.5, 2: 0.25, 5: 0.75, 20: 0.75}


def _points(line) -> list[tuple[float, float]]:
    return list(zip(line.get_xdata(), line.get_ydata()))


def test_the_scores_by_k_and_the_chosen_one(tmp_path, saves_png):
    ax = plot_k_scores(SCORES)
    scores, chosen = ax.get_lines()
    assert _points(scores) == [(2, 0.25), (5, 0.75), (10, 0.5), (20, 0.75)]
    assert _points(chosen) == [(5, 0.75)]  # the best score, the smaller K on a tie
    assert ax.get_xlabel().startswith("n_clusters")
    saves_png(ax.figure, tmp_path / "k_scores.png")


def test_an_estimators_scores_and_its_choice_on_given_axes():
    est = IMCSwAVClustering()
    est.k_scores_, est.n_clusters_ = {2: 0.5, 3: 0.5}, 3  # its own choice is marked
    _, ax = plt.subplots()
    assert plot_k_scores(est, ax=ax) is ax
    assert _points(ax.get_lines()[1]) == [(3, 0.5)]


def test_what_cannot_be_plotted():
    with pytest.raises(NotFittedError):
        plot_k_scores(IMCSwAVClustering())
    one_k = IMCSwAVClustering()
    one_k.k_scores_, one_k.n_clusters_ = None, 4
    with pytest.raises(ValueError, match="one n_clusters"):
        plot_k_scores(one_k)
    with pytest.raises(TypeError, match="dict of K to score"):
        plot_k_scores([0.5, 0.25])
    with pytest.raises(ValueError, match="finite"):
        plot_k_scores({2: float("nan"), 3: 0.5})
    with pytest.raises(ValueError, match="at least one"):
        plot_k_scores({})
