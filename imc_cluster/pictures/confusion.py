"""The confusion matrix: the true classes against the clusters, ordered by the Hungarian map of
:func:`~imc_cluster.metrics.cluster_mapping`.
"""

from __future__ import annotations

import numpy as np

from imc_cluster.metrics import cluster_accuracy, cluster_mapping
from imc_cluster.pictures.common import check_labels, pyplot

__all__ = ["plot_confusion_matrix"]

#: the confusion matrix writes its values in the cells when neither side has more entries than this
ANNOTATE_UP_TO = 20
NORMALIZATIONS = (None, "true", "pred", "all")


def _unlabelled_check(labels: np.ndarray, name: str) -> None:
    if labels.dtype.kind in "if" and (labels < 0).any():
        raise ValueError(
            f"{name} contains negative labels such as -1 (unlabelled or noise samples): keep "
            "only the labelled samples before plotting."
        )


def _matched_table(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list, list, list]:
    """Contingency table (true classes x clusters) with the clusters matched by the Hungarian map first, in
    the order of their classes, then the unmatched ones; with the classes, the column order and the matched
    cells (row, column)."""
    mapping = cluster_mapping(y_true, y_pred)
    classes, class_index = np.unique(y_true, return_inverse=True)
    clusters, cluster_index = np.unique(y_pred, return_inverse=True)
    row_of = {c: i for i, c in enumerate(classes.tolist())}
    matched = sorted(mapping, key=lambda cluster: row_of[mapping[cluster]])
    columns = matched + [cluster for cluster in clusters.tolist() if cluster not in mapping]
    column_of = {cluster: j for j, cluster in enumerate(columns)}
    column_index = np.array([column_of[cluster] for cluster in clusters.tolist()])[cluster_index]
    cells = class_index * len(columns) + column_index
    table = np.bincount(cells, minlength=len(classes) * len(columns)).reshape(len(classes), len(columns))
    return table, classes.tolist(), columns, [(row_of[mapping[c]], j) for j, c in enumerate(matched)]


def _normalized(table: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize is None:
        return table
    if normalize == "true":
        return table / table.sum(axis=1, keepdims=True)
    if normalize == "pred":
        return table / table.sum(axis=0, keepdims=True)
    return table / table.sum()


def _tick_names(class_names, classes: list) -> list[str]:
    if class_names is None:
        return [str(c) for c in classes]
    if isinstance(class_names, (str, bytes)):
        raise TypeError("class_names must be a sequence of names, not a string.")
    names = [str(name) for name in class_names]
    if len(names) != len(classes):
        raise ValueError(
            f"class_names has {len(names)} names for {len(classes)} classes in y_true ({classes})."
        )
    return names


def _annotate_cells(ax, values: np.ndarray, integers: bool) -> None:
    threshold = values.max() / 2
    for (row, column), value in np.ndenumerate(values):
        ax.text(
            column,
            row,
            f"{value:d}" if integers else f"{value:.2f}",
            ha="center",
            va="center",
            fontsize="small",
            color="white" if value > threshold else "black",
        )


def plot_confusion_matrix(
    y_true, y_pred, *, normalize: str | None = None, class_names=None, annotate: bool | None = None, ax=None
):
    """Confusion matrix of true classes against clusters in the order of the Hungarian map.

    Column ``i`` is the cluster matched to the class of row ``i`` by
    :func:`~imc_cluster.metrics.cluster_mapping`, so with at least as many clusters as classes the matched
    pairs form the diagonal; surplus clusters follow in their own order, and with fewer clusters than classes
    the matched cells move right of the diagonal. Matched cells are outlined; the title gives the accuracy
    of :func:`~imc_cluster.metrics.cluster_accuracy`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True classes (integers or strings; negative numbers such as -1 for unlabelled samples are refused).
    y_pred : array-like of shape (n_samples,)
        Clusters (likewise).
    normalize : {None, "true", "pred", "all"}, default=None
        None: counts; "true": every row sums to 1 (recall of each class); "pred": every column sums to 1
        (purity of each cluster); "all": the whole matrix sums to 1.
    class_names : sequence of str, default=None
        Names of the true classes in sorted order of their labels; None: the labels.
    annotate : bool, default=None
        Write the values in the cells; None: when neither side has more than 20 entries.
    ax : matplotlib Axes, default=None
        Axes to draw on; None: a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The matrix is its image (``ax.images[0].get_array()``); the columns are labelled with the clusters.
    """
    y_true, y_pred = check_labels(y_true, "y_true"), check_labels(y_pred, "y_pred")
    _unlabelled_check(y_true, "y_true")
    _unlabelled_check(y_pred, "y_pred")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"y_true and y_pred have different lengths ({y_true.shape[0]} and {y_pred.shape[0]})."
        )
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}.")
    table, classes, columns, matched = _matched_table(y_true, y_pred)
    names = _tick_names(class_names, classes)
    values = _normalized(table, normalize)
    plt = pyplot()
    if ax is None:
        side = 0.45 * max(table.shape)
        _, ax = plt.subplots(figsize=(min(3.0 + side, 20.0), min(2.5 + side, 20.0)), layout="compressed")
    image = ax.imshow(values, cmap="Blues", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax)
    crowded = max(table.shape) > ANNOTATE_UP_TO
    ax.set_xticks(range(len(columns)), [str(c) for c in columns], fontsize="x-small" if crowded else None)
    ax.set_yticks(range(len(names)), names, fontsize="x-small" if crowded else None)
    ax.set_xlabel("cluster (matched order)")
    ax.set_ylabel("true class")
    for row, column in matched:
        ax.add_patch(
            plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="tab:orange", lw=1.5)
        )
    if not crowded if annotate is None else annotate:
        _annotate_cells(ax, values, normalize is None)
    ax.set_title(f"ACC {cluster_accuracy(y_true, y_pred):.3f}")
    return ax
