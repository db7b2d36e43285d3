"""Pictures of a clustering with matplotlib (the optional ``plots`` extra).

:func:`plot_cluster_gallery` shows every cluster's most typical images, :func:`plot_confusion_matrix`
the true classes against the clusters ordered by the Hungarian map of
:func:`~imc_cluster.metrics.cluster_mapping`, and :func:`plot_training_curves` the loss terms, learning
rate and scores of ``history_`` (or of the CLI's ``history.jsonl``). matplotlib is imported only when a
function draws, so ``import imc_cluster`` never loads it. Showing, saving and closing the figures are left
to the caller.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .metrics import cluster_accuracy, cluster_mapping

__all__ = ["plot_cluster_gallery", "plot_confusion_matrix", "plot_training_curves"]

#: panels of the training curves: title and the history keys drawn on it, in this order
PANELS = (("losses", ("loss", "swav", "mi", "reg")), ("learning rate", ("lr",)),
          ("scores", ("acc", "nmi", "ari")))
#: the confusion matrix writes its values in the cells when neither side has more entries than this
ANNOTATE_UP_TO = 20
NORMALIZATIONS = (None, "true", "pred", "all")


def _pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("imc_cluster's plots need matplotlib, which is not installed: "
                          "pip install 'imc-cluster[plots]'") from error
    return plt


def _labels(values, name: str) -> np.ndarray:
    """Non-empty 1-D labels that sort: integers, strings, booleans or finite floats."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if array.dtype.kind == "O":
        try:
            np.unique(array)
        except TypeError:
            raise TypeError(f"{name} mixes labels that cannot be sorted together (e.g. None and numbers)."
                            ) from None
    elif array.dtype.kind not in "biufUS":
        raise TypeError(f"{name} must hold integer, string or float labels, got dtype {array.dtype}.")
    return array


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")
    return int(value)


# --------------------------------------------------------------------------------------------- gallery
def _images(images) -> np.ndarray:
    """(N, H, W) grey or (N, H, W, 3|4) colour images, uint8 or floats in [0, 1]; (N, H, W, 1) as grey."""
    array = np.asarray(images)
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or floats in [0, 1], got dtype {array.dtype}.")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (3, 4))):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C) with C 1, 3 or 4, got shape "
                         f"{array.shape} (channel-first images: images.transpose(0, 2, 3, 1)).")
    if array.dtype.kind == "f":
        if array.dtype not in (np.float32, np.float64):  # what matplotlib resamples
            array = array.astype(np.float64)
        if not (np.isfinite(array).all() and array.min(initial=0) >= 0 and array.max(initial=0) <= 1):
            raise ValueError("float images must hold finite values in [0, 1]; scale them or pass uint8.")
    return array


def _confidence(confidence, labels: np.ndarray) -> np.ndarray | None:
    """One score per sample: ``confidence`` itself, or from soft assignments (N, K) the labelled column."""
    if confidence is None:
        return None
    values = np.asarray(confidence)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"confidence must be numeric, got dtype {values.dtype}.")
    if values.ndim == 2 and values.shape[0] == labels.shape[0]:
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= values.shape[1]:
            raise ValueError(f"2-D confidence (soft assignments with {values.shape[1]} columns) needs "
                             f"integer cluster labels between 0 and {values.shape[1] - 1}.")
        values = values[np.arange(labels.shape[0]), labels]
    if values.shape != labels.shape:
        raise ValueError(f"confidence must have shape ({labels.shape[0]},) or ({labels.shape[0]}, "
                         f"n_clusters), got {values.shape}.")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("confidence contains NaN or infinite values.")
    return values


def _chosen_clusters(labels: np.ndarray, clusters) -> list:
    if clusters is None:
        return np.unique(labels).tolist()
    if isinstance(clusters, (str, bytes)):
        raise TypeError("clusters must be a sequence of cluster labels, not a string.")
    chosen = list(clusters)
    if not chosen:
        raise ValueError("clusters is empty: name at least one cluster to show.")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"clusters names a cluster more than once: {chosen}.")
    return chosen


def _typical(members: np.ndarray, confidence: np.ndarray | None, count: int) -> np.ndarray:
    """The ``count`` most confident of ``members`` (ties and no confidence: in data order)."""
    if confidence is not None:
        members = members[np.argsort(-confidence[members], kind="stable")]
    return members[:count]


def plot_cluster_gallery(images, labels, confidence=None, *, per_cluster: int = 8, clusters=None,
                         figure=None):
    """A gallery with one row per cluster of its most typical images.

    Parameters
    ----------
    images : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
        uint8 images or floats in [0, 1]; C is 1 (grey, like 2-D images), 3 (RGB) or 4 (RGBA). Grey images
        are drawn with a grey colour map over the full range of their type.
    labels : array-like of shape (n_samples,)
        Cluster of every image, e.g. ``est.predict(images)``.
    confidence : array-like of shape (n_samples,) or (n_samples, n_clusters), default=None
        Score of every image in its cluster, or soft assignments (``est.predict_proba(images)``) whose
        column of the image's cluster is read. A row shows the highest scores first; without confidence
        the cluster's first images.
    per_cluster : int, default=8
        Images per row.
    clusters : sequence, default=None
        Clusters to show, in this order (a cluster without images gets an empty row); None: every cluster
        present in ``labels``, sorted.
    figure : matplotlib Figure or SubFigure, default=None
        An empty figure to draw in; None: a new one.

    Returns
    -------
    figure : matplotlib.figure.Figure
        ``len(clusters)`` rows of ``per_cluster`` axes; each row's first title names the cluster and its size.
    """
    images = _images(images)
    labels = _labels(labels, "labels")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"images and labels have different lengths ({images.shape[0]} and "
                         f"{labels.shape[0]}).")
    confidence = _confidence(confidence, labels)
    per_cluster = _positive_int(per_cluster, "per_cluster")
    rows = _chosen_clusters(labels, clusters)
    plt = _pyplot()
    if figure is None:
        figure = plt.figure(figsize=(1.1 * per_cluster, 1.3 * len(rows)), layout="compressed")
    grid = figure.subplots(len(rows), per_cluster, squeeze=False)
    grey = {"cmap": "gray", "vmin": 0, "vmax": 255 if images.dtype == np.uint8 else 1}
    style = {} if images.ndim == 4 else grey
    for axes, cluster in zip(grid, rows):
        members = np.flatnonzero(labels == cluster)
        for ax in axes:
            ax.set_axis_off()
        for ax, index in zip(axes, _typical(members, confidence, per_cluster)):
            ax.imshow(images[index], interpolation="nearest", **style)
        axes[0].set_title(f"cluster {cluster}: n={members.size}", loc="left", fontsize="small")
    return figure


# ------------------------------------------------------------------------------------ confusion matrix
def _unlabelled_check(labels: np.ndarray, name: str) -> None:
    if labels.dtype.kind in "if" and (labels < 0).any():
        raise ValueError(f"{name} contains negative labels such as -1 (unlabelled or noise samples): keep "
                         "only the labelled samples before plotting.")


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
        raise ValueError(f"class_names has {len(names)} names for {len(classes)} classes in y_true "
                         f"({classes}).")
    return names


def _annotate_cells(ax, values: np.ndarray, integers: bool) -> None:
    threshold = values.max() / 2
    for (row, column), value in np.ndenumerate(values):
        ax.text(column, row, f"{value:d}" if integers else f"{value:.2f}", ha="center", va="center",
                fontsize="small", color="white" if value > threshold else "black")


def plot_confusion_matrix(y_true, y_pred, *, normalize: str | None = None, class_names=None,
                          annotate: bool | None = None, ax=None):
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
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _unlabelled_check(y_true, "y_true")
    _unlabelled_check(y_pred, "y_pred")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(f"y_true and y_pred have different lengths ({y_true.shape[0]} and "
                         f"{y_pred.shape[0]}).")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}.")
    table, classes, columns, matched = _matched_table(y_true, y_pred)
    names = _tick_names(class_names, classes)
    values = _normalized(table, normalize)
    plt = _pyplot()
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
        ax.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="tab:orange",
                                   lw=1.5))
    if not crowded if annotate is None else annotate:
        _annotate_cells(ax, values, normalize is None)
    ax.set_title(f"ACC {cluster_accuracy(y_true, y_pred):.3f}")
    return ax


# ------------------------------------------------------------------------------------- training curves
def _read_history(path: Path) -> list:
    """The records of a ``history.jsonl`` (or of the one in the CLI's output folder ``path``)."""
    if path.is_dir():
        path = path / "history.jsonl"
    records = []
    with path.open(encoding="utf-8") as file:
        try:
            lines = list(file)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text file of JSON records (history.jsonl).") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not a JSON record ({error.msg}).") from None
    return records


def _records(history) -> list[dict]:
    if isinstance(history, (str, os.PathLike)):
        records = _read_history(Path(history))
    elif hasattr(history, "get_params"):
        check_is_fitted(history, "history_")
        records = history.history_
    elif isinstance(history, (list, tuple)):
        records = list(history)
    else:
        raise TypeError("history must be a list of epoch records (history_), a fitted estimator or the "
                        f"path of a history.jsonl, got {type(history).__name__}.")
    if not records:
        raise ValueError("history is empty: there is no epoch to plot.")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise TypeError(f"history record {number} is a {type(record).__name__}, not a dict.")
    return records


def _curve_keys(records: list[dict], metrics) -> list[str]:
    present = list(dict.fromkeys(key for record in records for key in record))
    if metrics is None:
        keys = [key for _, names in PANELS for key in names if key in present]
        if not keys:
            raise ValueError(f"history has none of the keys plotted by default; pass metrics= with some of "
                             f"{present}.")
        return keys
    keys = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"metrics must be a history key or a list of keys, got {type(metrics).__name__}.")
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ValueError("metrics is empty: name at least one history key to plot.")
    missing = [key for key in keys if key not in present]
    if missing:
        raise ValueError(f"history has no {missing}; its keys are {present}.")
    return keys


def _panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of ``keys``: the losses, learning rate and scores together, any other key alone."""
    grouped = {key for _, names in PANELS for key in names}
    panels = [(title, [key for key in names if key in keys]) for title, names in PANELS]
    panels += [(key, [key]) for key in keys if key not in grouped]
    return [(title, names) for title, names in panels if names]


def _series(records: list[dict], epochs: list, key: str) -> tuple[list, list]:
    """The epochs and values of the records that have ``key`` (a JSON null counts as absent)."""
    xs, ys = [], []
    for number, (epoch, record) in enumerate(zip(epochs, records), 1):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"history record {number}: {key} is {value!r}, not a number.")
        xs.append(epoch)
        ys.append(float(value))
    return xs, ys


def plot_training_curves(history, *, metrics=None, axes=None):
    """Training curves: loss terms, learning rate and, when recorded, ACC/NMI/ARI over the epochs.

    Parameters
    ----------
    history : list of dict, fitted estimator, or path
        ``est.history_``, the fitted estimator itself, or the path of the ``history.jsonl`` that
        ``imc-cluster train`` writes (or of its output folder). Records without some key (no ``acc``
        without an evaluation set, say) leave their epoch out of that curve.
    metrics : str or sequence of str, default=None
        History keys to draw; None: those of ``loss``, ``swav``, ``mi``, ``reg``, ``lr``, ``acc``,
        ``nmi``, ``ari`` present. The loss terms share one panel, the scores another, the learning rate and
        any other key (``seconds``, ``images_per_second``, ...) have their own.
    axes : sequence of matplotlib Axes, default=None
        One Axes per panel; None: a new figure with the panels side by side.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure of the panels; every curve is a line labelled with its key, over the records' ``epoch``
        (or 1, 2, ... when a record has none).
    """
    records = _records(history)
    panels = _panels(_curve_keys(records, metrics))
    plt = _pyplot()
    if axes is None:
        _, grid = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False,
                               layout="constrained")
        axes = grid[0]
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != len(panels):
        raise ValueError(f"axes has {len(axes)} Axes for {len(panels)} panels ({[t for t, _ in panels]}).")
    with_epoch = all(isinstance(r.get("epoch"), numbers.Real) for r in records)
    epochs = [r["epoch"] for r in records] if with_epoch else list(range(1, len(records) + 1))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(*_series(records, epochs, key), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    return axes[0].figure
