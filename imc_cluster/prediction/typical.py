"""The most typical images of every cluster, chosen while predicting, drawn as one picture with PIL.

:class:`TypicalImages` chooses, for every cluster, the ``per_cluster`` images whose encoder features are
nearest the cluster's centre: a stream of batches of features, from which only the L2-normalised feature
vectors are kept (no images); once the stream ends, the chosen images alone are read again
(:meth:`TypicalImages.load_images`). :func:`gallery_image` draws them: one row per non-empty cluster, the
cluster's index and size written at the start of its row, then its images from the most typical on. Only
PIL is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imc_cluster.core.numbers import check_integer

__all__ = ["PADDING", "MAX_TILE", "TypicalImages", "check_tile", "gallery_image"]

#: pixels between tiles, rows and the picture's border
PADDING = 4
_BACKGROUND, _INK = (255, 255, 255), (0, 0, 0)


class TypicalImages:
    """The ``per_cluster`` images of every cluster nearest its centre in feature space, over a stream.

    Every feature vector (e.g. the estimator's ``transform``: the encoder features that the cluster head
    reads) is L2-normalised; a cluster's centre is the mean of its members' normalised features, and its
    members are ranked by cosine similarity to that centre, highest first (the order of the Euclidean
    distance between the normalised feature and the normalised centre). So an outlier the head is most
    sure of (a solid square, say) is not shown as typical. Ties go to the image seen first, so the choice
    does not depend on how the stream is cut into batches. The normalised features of every image are
    kept until the end (4 bytes per feature per image: 2 KB at 512 features), images only for the chosen.

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    per_cluster : int, default=8
        Images chosen per cluster.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_clusters,)
        Images seen per cluster.
    """

    def __init__(self, n_clusters: int, per_cluster: int = 8) -> None:
        self.n_clusters = check_integer("n_clusters", n_clusters)
        self.per_cluster = check_integer("per_cluster", per_cluster)
        self.counts = np.zeros(self.n_clusters, dtype=np.int64)
        self._features: list[np.ndarray] = []  # normalised float32 features, one array per batch
        self._clusters: list[np.ndarray] = []
        self._paths: list[str] = []
        self._sums: np.ndarray | None = None  # (n_clusters, n_features) sums of the normalised features
        self._chosen: list[tuple[np.ndarray, np.ndarray]] | None = None  # (indices, similarity) per cluster
        self._images: list[np.ndarray] | None = None

    def _check(self, features: np.ndarray, clusters: np.ndarray, paths: list) -> None:
        if features.ndim != 2 or (self._sums is not None and features.shape[1] != self._sums.shape[1]):
            expected = "" if self._sums is None else f" of {self._sums.shape[1]} features, as earlier ones"
            raise ValueError(f"features must be a 2-d array (n, n_features){expected}, got {features.shape}.")
        if clusters.shape != (len(features),) or len(paths) != len(features):
            raise ValueError(
                f"clusters and paths need one entry per feature vector ({len(features)}), got "
                f"{clusters.shape} and {len(paths)}."
            )
        outside = len(clusters) and (clusters.min() < 0 or clusters.max() >= self.n_clusters)
        if clusters.dtype.kind not in "iu" or outside:
            raise ValueError(f"clusters must be ints in [0, {self.n_clusters}).")
        if not np.isfinite(features).all():
            raise ValueError("features must be finite.")

    def update(self, features, clusters, paths: Sequence[str]) -> None:
        """Add a batch.

        Parameters
        ----------
        features : array-like of float, shape (n, n_features)
            Feature vector of every image; every batch of one width.
        clusters : array-like of int, shape (n,)
            Cluster of every image, in ``[0, n_clusters)``.
        paths : sequence of str
            Where every image comes from (one name per image): what :meth:`load_images` reads and
            :meth:`paths` returns.
        """
        features, clusters = np.asarray(features, dtype=np.float64), np.asarray(clusters)
        paths = list(paths)
        self._check(features, clusters, paths)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        normalised = features / np.maximum(norms, np.finfo(np.float64).tiny)
        if self._sums is None:
            self._sums = np.zeros((self.n_clusters, features.shape[1]))
        np.add.at(self._sums, clusters, normalised)
        self.counts += np.bincount(clusters, minlength=self.n_clusters)
        self._features.append(normalised.astype(np.float32))
        self._clusters.append(clusters.astype(np.int64))
        self._paths += paths
        self._chosen = self._images = None

    def _choose(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The indices of every cluster's chosen images, nearest first, and their cosine similarity."""
        if self._chosen is None:
            if self._sums is None:
                self._chosen = [(np.empty(0, np.int64), np.empty(0))] * self.n_clusters
                return self._chosen
            lengths = np.linalg.norm(self._sums, axis=1, keepdims=True)
            centres = self._sums / np.maximum(lengths, np.finfo(np.float64).tiny)
            similarity = np.concatenate(
                [np.einsum("nd,nd->n", part, centres[k]) for part, k in zip(self._features, self._clusters)]
            )
            clusters = np.concatenate(self._clusters)
            order = np.lexsort((-similarity, clusters))  # stable: ties keep the order seen
            starts = np.searchsorted(clusters[order], np.arange(self.n_clusters))
            chosen = [
                order[start : start + min(self.per_cluster, n)] for start, n in zip(starts, self.counts)
            ]
            self._chosen = [(indices, similarity[indices]) for indices in chosen]
        return self._chosen

    def paths(self, cluster: int) -> list[str]:
        """The paths of the chosen images of ``cluster``, nearest its centre first."""
        return [self._paths[index] for index in self._choose()[cluster][0]]

    def similarity(self, cluster: int) -> np.ndarray:
        """The cosine similarity of the chosen images of ``cluster`` to its centre, in the order of
        :meth:`paths`."""
        return self._choose()[cluster][1].copy()

    def load_images(self, read: Callable[[list], tuple[np.ndarray, list]]) -> None:
        """Read the chosen images of every cluster, for :meth:`images` and the picture.

        Parameters
        ----------
        read : callable
            ``read(paths)`` of the chosen paths of all clusters: the uint8 ``(m, H, W, C)`` images (``C`` in
            {1, 3}) of those it can read, and their paths. An image that cannot be read is left out.
        """
        wanted = [path for cluster in range(self.n_clusters) for path in self.paths(cluster)]
        images, read_paths = read(wanted)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(
                f"images must be uint8 (m, H, W, C) with C in {{1, 3}}, got {images.dtype} {images.shape}."
            )
        found = dict(zip(read_paths, images))
        self._images = []
        for cluster in range(self.n_clusters):
            indices, similarity = self._chosen[cluster]
            kept = [at for at, index in enumerate(indices) if self._paths[index] in found]
            self._chosen[cluster] = (indices[kept], similarity[kept])
            stacked = [found[self._paths[index]] for index in indices[kept]]
            self._images.append(np.stack(stacked) if stacked else np.empty((0, *images.shape[1:]), np.uint8))

    def images(self, cluster: int) -> np.ndarray:
        """The chosen images of ``cluster``, nearest its centre first: uint8 ``(m, H, W, C)``,
        ``m <= per_cluster`` (empty for a cluster without images). :meth:`load_images` reads them."""
        if self._images is None:
            raise ValueError("The typical images are not read yet: call load_images(read) first.")
        return self._images[cluster].copy()


def _tile(image: np.ndarray, tile: int) -> Image.Image:
    """An RGB picture of ``image`` that fits in ``tile x tile``: enlarged pixel by pixel (nearest), or
    shrunk with the antialiased Lanczos filter."""
    picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert("RGB")
    scale = tile / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)


#: the largest tile of the picture, in pixels: larger tiles make pictures of gigabytes
MAX_TILE = 1024


def check_tile(tile: int) -> int:
    """``tile``, a positive int of at most :data:`MAX_TILE` pixels; a ValueError names it otherwise."""
    tile = check_integer("tile", tile)
    if tile > MAX_TILE:
        raise ValueError(
            f"tile must be at most {MAX_TILE} pixels (a picture of every cluster's images), got {tile}."
        )
    return tile


def gallery_image(typical: TypicalImages, *, tile: int = 64) -> Image.Image:
    """One picture of the typical images of every cluster.

    Every non-empty cluster is one row, in cluster order: at its start, the cluster's index and size
    ("cluster 3", "120 images"), then its chosen images, nearest its centre first, each fitted into a square
    ``tile`` pixels wide. Rows are ``tile + PADDING`` pixels apart, below a ``PADDING`` border: the
    picture is ``PADDING + rows * (tile + PADDING)`` pixels high.

    Parameters
    ----------
    typical : TypicalImages
        The chosen images, read (:meth:`TypicalImages.load_images`).
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
    tile = check_tile(tile)
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
