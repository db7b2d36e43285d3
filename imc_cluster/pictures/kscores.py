"""The scores of candidate numbers of clusters: ``k_scores_`` of a fit that chose ``n_clusters`` among
candidates, the score of every K, the chosen one marked."""

from __future__ import annotations

import math
from collections.abc import Mapping

from sklearn.utils.validation import check_is_fitted

from imc_cluster.core.numbers import is_integer, is_real
from imc_cluster.criteria import select_n_clusters
from imc_cluster.pictures.common import pyplot

__all__ = ["plot_k_scores"]


def _scores(k_scores) -> tuple[dict[int, float], int]:
    """The scores of ``k_scores`` (a mapping or a fitted estimator) by increasing K, and the chosen K."""
    if hasattr(k_scores, "get_params"):
        check_is_fitted(k_scores, "k_scores_")
        if k_scores.k_scores_ is None:
            raise ValueError(
                "The estimator was fitted with one n_clusters: there are no candidate scores to plot "
                "(give n_clusters a sequence of candidate Ks)."
            )
        return dict(sorted(k_scores.k_scores_.items())), int(k_scores.n_clusters_)
    if not isinstance(k_scores, Mapping):
        raise TypeError(
            f"k_scores must be a dict of K to score (k_scores_) or a fitted estimator, got "
            f"{type(k_scores).__name__}."
        )
    for k, score in k_scores.items():
        if not is_integer(k) or not is_real(score) or not math.isfinite(score):
            raise ValueError(f"k_scores must map int Ks to finite scores, got {k!r}: {score!r}.")
    scores = {int(k): float(score) for k, score in sorted(k_scores.items())}
    return scores, select_n_clusters(scores)


def plot_k_scores(k_scores, *, ax=None):
    """The score of every candidate number of clusters, the chosen K marked.

    Parameters
    ----------
    k_scores : dict of int to float, or fitted estimator
        ``est.k_scores_`` of a fit with candidate Ks (``n_clusters`` a sequence), or the estimator itself.
        The chosen K is the estimator's ``n_clusters_``, else the highest score (the smallest K on a tie,
        as the fit chooses).
    ax : matplotlib Axes, default=None
        Axes to draw on; None: a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The scores are its first line (K on the x axis), the chosen K its second (one marker).

    Raises
    ------
    ValueError
        When there is no score, a K is not an int or a score not finite, or the estimator was fitted with
        one ``n_clusters``.
    """
    scores, chosen = _scores(k_scores)
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    ax.plot(list(scores), list(scores.values()), marker="o", label="score")
    ax.plot(
        [chosen], [scores[chosen]], linestyle="none", marker="*", markersize=14, label=f"chosen K={chosen}"
    )
    ax.set_xlabel("n_clusters (K)")
    ax.set_ylabel("stability (mean pairwise ARI of the heads)")
    if len(scores) <= 20:
        ax.set_xticks(list(scores))
    ax.legend(fontsize="small")
    ax.set_title(f"n_clusters: {chosen} of {len(scores)} candidates")
    return ax
