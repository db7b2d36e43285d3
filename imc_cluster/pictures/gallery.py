"""The cluster gallery: every cluster's most typical images in a matplotlib figure."""

from __future__ import annotations

import numpy as np

from imc_cluster.core.numbers import check_integer
from imc_cluster.pictures.common import check_labels, pyplot

__all__ = ["plot_cluster_gallery"]


def _images(images) -> np.ndarray:
    """(N, H, W) grey or (N, H, W, 3|4) colour images, uint8 or floats in [0, 1]; (N, H, W, 1) as grey."""
    array = np.asarray(images)
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or floats in [0, 1], got dtype {array.dtype}.")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (3, 4))):
        raise ValueError(
            f"images must be (N, H, W) or (N, H, W, C) with C 1, 3 or 4, got shape "
            f"{array.shape} (channel-first images: images.transpose(0, 2, 3, 1))."
        )
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
            raise ValueError(
                f"2-D confidence (soft assignments with {values.shape[1]} columns) needs "
                f"integer cluster labels between 0 and {values.shape[1] - 1}."
            )
        values = values[np.arange(labels.shape[0]), labels]
    if values.shape != labels.shape:
        raise ValueError(
            f"confidence must have shape ({labels.shape[0]},) or ({labels.shape[0]}, "
            f"n_clusters), got {values.shape}."
        )
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


def plot_cluster_gallery(
    images, labels, confidence=None, *, per_cluster: int = 8, clusters=None, figure=None
):
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
    labels = check_labels(labels, "labels")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"images and labels have different lengths ({images.shape[0]} and {labels.shape[0]})."
        )
    confidence = _confidence(confidence, labels)
    per_cluster = check_integer("per_cluster", per_cluster)
    rows = _chosen_clusters(labels, clusters)
    plt = pyplot()
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
