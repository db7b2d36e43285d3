"""The most typical images of every cluster, kept while predicting, drawn as one picture with PIL.

:class:`TypicalImages` keeps, for every cluster, the ``per_cluster`` images of highest confidence seen so
far: a streaming top-n, updated a batch at a time, that never holds more than ``per_cluster`` images per
cluster. :func:`gallery_image` draws them: one row per non-empty cluster, the cluster's index and size
written at the start of its row, then its images from the most typical on. Only PIL is needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imc_cluster.core.numbers import check_integer

__all__ = ["PADDING", "TypicalImages", "gallery_image"]

#: pixels between tiles, rows and the picture's border
PADDING = 4
_BACKGROUND, _INK = (255, 255, 255), (0, 0, 0)


class TypicalImages:
    """The ``per_cluster`` most confident images of every cluster, over a stream of batches.

    Ties of confidence go to the image seen first, so the result does not depend on how the stream is cut
    into batches.

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    per_cluster : int, default=8
        Images kept per cluster.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_clusters,)
        Images seen per cluster.
    """

    def __init__(self, n_clusters: int, per_cluster: int = 8) -> None:
        self.n_clusters = check_integer("n_clusters", n_clusters)
        self.per_cluster = check_integer("per_cluster", per_cluster)
        self.counts = np.zeros(self.n_clusters, dtype=np.int64)
        self._confidence = [np.empty(0) for _ in range(self.n_clusters)]
        self._images: list[np.ndarray | None] = [None] * self.n_clusters
        self._paths: list[list[str | None]] = [[] for _ in range(self.n_clusters)]
        self._shape: tuple[int, ...] | None = None

    def _check(self, images: np.ndarray, clusters: np.ndarray, confidence: np.ndarray, paths) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(
                f"images must be uint8 (n, H, W, C) with C in {{1, 3}}, got {images.dtype} {images.shape}."
            )
        if self._shape is not None and images.shape[1:] != self._shape:
            raise ValueError(f"images are {images.shape[1:]} (H, W, C), but earlier ones were {self._shape}.")
        n_images = len(images)
        if clusters.shape != (n_images,) or confidence.shape != (n_images,) or len(paths) != n_images:
            raise ValueError(
                f"clusters, confidence and paths need one entry per image ({n_images}), got "
                f"{clusters.shape}, {confidence.shape} and {len(paths)}."
            )
        outside = n_images and (clusters.min() < 0 or clusters.max() >= self.n_clusters)
        if clusters.dtype.kind not in "iu" or outside:
            raise ValueError(f"clusters must be ints in [0, {self.n_clusters}).")
        if not np.isfinite(confidence).all():
            raise ValueError("confidence must be finite.")

    def update(self, images, clusters, confidence, paths=None) -> None:
        """Add a batch.

        Parameters
        ----------
        images : ndarray of uint8, shape (n, H, W, C)
            The images, ``C`` in {1, 3}; every batch of one shape. They are copied.
        clusters : array-like of int, shape (n,)
            Cluster of every image, in ``[0, n_clusters)``.
        confidence : array-like of float, shape (n,)
            How typical every image is of its cluster (e.g. its cluster probability); the highest are kept.
        paths : sequence of str, default=None
            Where every image comes from, returned by :meth:`paths`.
        """
        images, clusters = np.asarray(images), np.asarray(clusters)
        confidence = np.asarray(confidence, dtype=np.float64)
        paths = [None] * len(images) if paths is None else list(paths)
        self._check(images, clusters, confidence, paths)
        if not len(images):
            return
        self._shape = images.shape[1:]
        self.counts += np.bincount(clusters, minlength=self.n_clusters)
        for cluster in np.unique(clusters):
            self._merge(int(cluster), np.flatnonzero(clusters == cluster), images, confidence, paths)

    def _merge(self, cluster: int, new: np.ndarray, images, confidence, paths) -> None:
        """Keep the best of the cluster's kept images and its ``new`` ones (indices into the batch)."""
        kept = len(self._confidence[cluster])
        merged = np.concatenate([self._confidence[cluster], confidence[new]])
        top = np.argsort(-merged, kind="stable")[: self.per_cluster]
        old_images, old_paths = self._images[cluster], self._paths[cluster]
        self._images[cluster] = np.stack([old_images[i] if i < kept else images[new[i - kept]] for i in top])
        self._paths[cluster] = [old_paths[i] if i < kept else paths[new[i - kept]] for i in top]
        self._confidence[cluster] = merged[top]

    def images(self, cluster: int) -> np.ndarray:
        """The kept images of ``cluster``, most confident first: uint8 ``(m, H, W, C)``, ``m <= per_cluster``
        (empty for a cluster without images)."""
        kept = self._images[cluster]
        return np.empty((0, *(self._shape or (0, 0, 3))), np.uint8) if kept is None else kept.copy()

    def paths(self, cluster: int) -> list[str | None]:
        """The paths of the kept images of ``cluster``, in the order of :meth:`images`."""
        return list(self._paths[cluster])

    def confidence(self, cluster: int) -> np.ndarray:
        """The confidence of the kept images of ``cluster``, in the order of :meth:`images`."""
        return self._confidence[cluster].copy()


def _tile(image: np.ndarray, tile: int) -> Image.Image:
    """An RGB picture of ``image`` that fits in ``tile x tile``: enlarged pixel by pixel (nearest), or
    shrunk with the antialiased Lanczos filter."""
    picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert("RGB")
    scale = tile / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)


#: the largest tile of the picture, in pixels: larger tiles make pictures of gigabytes
MAX_TILE = 1024


def gallery_image(typical: TypicalImages, *, tile: int = 64) -> Image.Image:
    """One picture of the typical images of every cluster.

    Every non-empty cluster is one row, in cluster order: at its start, the cluster's index and size
    ("cluster 3", "120 images"), then its kept images, most confident first, each fitted into a square
    ``tile`` pixels wide. Rows are ``tile + PADDING`` pixels apart, below a ``PADDING`` border: the
    picture is ``PADDING + rows * (tile + PADDING)`` pixels high.

    Parameters
    ----------
    typical : TypicalImages
        The kept images.
    tile : int, default=64
        Side of the square of every image, in pixels.

    Returns
    -------
    PIL.Image.Image
        An RGB picture.

    Raises
    ------
    ValueError
        When no cluster holds an image.
    """
    tile = check_integer("tile", tile)
    if tile > MAX_TILE:
        raise ValueError(
            f"tile must be at most {MAX_TILE} pixels (a picture of every cluster's images), got {tile}."
        )
    rows = [cluster for cluster in range(typical.n_clusters) if typical.counts[cluster] > 0]
    if not rows:
        raise ValueError("No cluster holds an image: there is nothing to draw.")
    font = ImageFont.load_default(size=max(9, min(16, tile // 5)))
    captions = {
        cluster: f"cluster {cluster}\n{typical.counts[cluster]} "
        f"image{'s' if typical.counts[cluster] != 1 else ''}"
        for cluster in rows
    }
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(measure.multiline_textbbox((0, 0), text, font=font)[2] for text in captions.values())
    left = 2 * PADDING + text_width
    width = left + typical.per_cluster * (tile + PADDING)
    canvas = Image.new("RGB", (width, PADDING + len(rows) * (tile + PADDING)), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for row, cluster in enumerate(rows):
        top = PADDING + row * (tile + PADDING)
        draw.multiline_text((PADDING, top), captions[cluster], fill=_INK, font=font)
        for column, image in enumerate(typical.images(cluster)):
            picture = _tile(image, tile)
            x = left + column * (tile + PADDING) + (tile - picture.width) // 2
            canvas.paste(picture, (x, top + (tile - picture.height) // 2))
    return canvas
