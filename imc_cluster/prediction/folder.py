"""Prediction over a folder of image files: which file went to which cluster, in bounded memory.

:func:`predict_folder` finds the image files under a folder
(:func:`~imc_cluster.data.folders.find_image_files`: recursively, every format PIL decodes, in sorted
order) and reads them a batch at a time
(:func:`~imc_cluster.data.folders.iter_image_batches`). Every image is brought to the fitted input of the
estimator, whatever data it was trained on: centre-cropped to the aspect of its ``(H, W)``, resized to
it, and converted to its channels (grey or RGB). Only one batch of images exists at a time; of every image
its encoder features are kept, to choose at the end each cluster's most typical images (those nearest its
centre, :class:`~imc_cluster.prediction.typical.TypicalImages`), which alone are read again. Files that
cannot be decoded (corrupt, not an image, over PIL's pixel limit) are listed, not fatal. Nothing is
written into the folder (no cache either: the batches are decoded as they come).

With ``copy_to`` or ``link_to`` every readable file is then copied (or symbolically linked) into a folder
per cluster (:mod:`~imc_cluster.prediction.placing`). With an output folder it writes three files, each
atomically:

* ``clusters.csv``: one row per readable file, in sorted file order, with the columns ``path`` (relative
  to the folder), ``cluster``, ``confidence`` (the cluster's probability), ``next_cluster`` and
  ``next_confidence`` (the runner-up; -1 and 0 for a single cluster), ``uncertain`` (``true`` when the
  confidence is below ``min_confidence``, else ``false``) and ``placed_as`` (where the file was copied or
  linked, relative to that folder; empty when it was not);
* ``clusters.png``: per non-empty cluster one row of its most typical images
  (:func:`~imc_cluster.prediction.typical.gallery_image`);
* ``summary.json``: the checkpoint, file counts, cluster sizes, mean confidence per cluster, the
  unreadable files with their error, and the names of the output files.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from imc_cluster.core.files import atomic_writes
from imc_cluster.data.decoding import DatasetNotFoundError, ImageFailure
from imc_cluster.data.folders import find_image_files, iter_image_batches
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.prediction.placing import (
    UNCERTAIN_FOLDER,
    Placement,
    check_min_confidence,
    cluster_folder_name,
    place_files,
    placing_target,
)
from imc_cluster.prediction.typical import TypicalImages, check_tile, gallery_image

__all__ = ["CSV_NAME", "GALLERY_NAME", "SUMMARY_NAME", "CSV_COLUMNS", "FolderPrediction", "predict_folder"]

CSV_NAME, GALLERY_NAME, SUMMARY_NAME = "clusters.csv", "clusters.png", "summary.json"
CSV_COLUMNS = ("path", "cluster", "confidence", "next_cluster", "next_confidence", "uncertain", "placed_as")


@dataclass
class FolderPrediction:
    """The clusters of the image files of a folder.

    Attributes
    ----------
    root : str
        The folder, as an absolute path.
    n_files : int
        Image files found.
    paths : list of str
        The readable files, relative to ``root`` ("/" separators), in sorted order.
    clusters, next_clusters : ndarray of int64, shape (n_predicted,)
        Most and second most probable cluster of every readable file (-1 with a single cluster).
    confidence, next_confidence : ndarray of float64, shape (n_predicted,)
        Their probabilities.
    failures : list of ImageFailure
        The files that could not be decoded, with the reason.
    typical : TypicalImages
        The most typical images of every cluster (nearest its centre in feature space).
    checkpoint : str or None
        The checkpoint the estimator was read from, if any.
    min_confidence : float or None
        The confidence below which a file is uncertain; None: none is.
    placement : Placement or None
        Where the files were copied or linked (``copy_to``, ``link_to``), if anywhere.
    """

    root: str
    n_files: int
    paths: list[str] = field(repr=False)
    clusters: np.ndarray = field(repr=False)
    confidence: np.ndarray = field(repr=False)
    next_clusters: np.ndarray = field(repr=False)
    next_confidence: np.ndarray = field(repr=False)
    failures: list[ImageFailure] = field(repr=False)
    typical: TypicalImages = field(repr=False)
    checkpoint: str | None = None
    min_confidence: float | None = None
    placement: Placement | None = field(default=None, repr=False)

    @property
    def uncertain(self) -> np.ndarray:
        """Whether every readable file's confidence is below ``min_confidence``, shape (n_predicted,)."""
        return self.confidence < (self.min_confidence if self.min_confidence is not None else -np.inf)

    def folders(self) -> list[str]:
        """The folder of every readable file inside ``copy_to``/``link_to``: ``uncertain``, or its
        cluster's (:func:`~imc_cluster.prediction.placing.cluster_folder_name`)."""
        n_clusters = self.typical.n_clusters
        return [
            UNCERTAIN_FOLDER if uncertain else cluster_folder_name(int(cluster), n_clusters)
            for cluster, uncertain in zip(self.clusters, self.uncertain)
        ]

    @property
    def cluster_sizes(self) -> np.ndarray:
        """Readable files per cluster, shape (n_clusters,)."""
        return np.bincount(self.clusters, minlength=self.typical.n_clusters)

    @property
    def mean_confidence(self) -> list[float | None]:
        """Mean confidence of the files of every cluster; None for an empty cluster."""
        totals = np.bincount(self.clusters, weights=self.confidence, minlength=self.typical.n_clusters)
        return [float(total / size) if size else None for total, size in zip(totals, self.cluster_sizes)]

    def summary(self) -> dict:
        """What ``summary.json`` holds, as plain data."""
        return {
            "checkpoint": self.checkpoint,
            "folder": self.root,
            "n_files": self.n_files,
            "n_predicted": len(self.paths),
            "n_unreadable": len(self.failures),
            "n_clusters": self.typical.n_clusters,
            "cluster_sizes": self.cluster_sizes.tolist(),
            "mean_confidence": self.mean_confidence,
            "min_confidence": self.min_confidence,
            "n_uncertain": int(self.uncertain.sum()),
            "placed": None
            if self.placement is None
            else {"mode": self.placement.mode, "folder": self.placement.folder},
            "unreadable": [{"path": failure.path, "error": failure.error} for failure in self.failures],
            "outputs": {"table": CSV_NAME, "picture": GALLERY_NAME, "summary": SUMMARY_NAME},
        }

    def write(self, output_dir: str | os.PathLike, *, tile: int = 64) -> dict[str, Path]:
        """Write ``clusters.csv``, ``clusters.png`` and ``summary.json`` into ``output_dir`` (created if
        needed), each atomically; returns their paths by kind ("table", "picture", "summary")."""
        picture = gallery_image(self.typical, tile=tile)  # a bad tile is refused before anything is written
        folder = _output_folder(output_dir)
        outputs = ((folder / CSV_NAME, "w"), (folder / GALLERY_NAME, "wb"), (folder / SUMMARY_NAME, "w"))
        with atomic_writes(*outputs) as (table, image, summary):  # replaced together, or none of them
            self._write_rows(table)
            picture.save(image, format="PNG")
            json.dump(self.summary(), summary, indent=2)
        return {kind: folder / name for kind, name in self.summary()["outputs"].items()}

    def _write_rows(self, handle) -> None:
        # the csv module's line ends ("\r\n"): a file name holding "\r" or "\n" is quoted, so every name the
        # file system allows reads back with the csv module
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        placed = self.placement.files if self.placement is not None else [""] * len(self.paths)
        columns = (self.paths, self.clusters, self.confidence, self.next_clusters, self.next_confidence)
        for row in zip(*columns, self.uncertain, placed):
            writer.writerow(
                (
                    row[0],
                    int(row[1]),
                    f"{row[2]:.6f}",
                    int(row[3]),
                    f"{row[4]:.6f}",
                    str(row[5]).lower(),
                    row[6],
                )
            )


def _output_folder(output_dir: str | os.PathLike) -> Path:
    """``output_dir``, created; an OSError names it."""
    folder = Path(output_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create the output folder {folder}: {error.strerror or error}.") from error
    return folder


def _without_outputs(files: list[str], root: Path, folder: Path) -> list[str]:
    """``files`` (relative to ``root``) less the picture that an earlier prediction wrote into ``folder``,
    when ``folder`` is inside ``root``: a prediction into its own input folder never reads its output."""
    picture = (folder / GALLERY_NAME).resolve()
    kept = [name for name in files if (root / name).resolve() != picture]
    if not kept:
        raise DatasetNotFoundError(f"No image files under {root} besides an earlier {picture}.")
    return kept


def _fitted_image_shape(estimator: IMCSwAVClustering) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images the estimator was fitted on."""
    check_is_fitted(estimator, "model_")
    shape = tuple(estimator.input_shape_)
    if len(shape) != 3:
        raise ValueError(
            f"The estimator was fitted on feature vectors of {shape[0]} values, not on images: "
            "it cannot cluster image files."
        )
    return shape


def _top_two(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best and second-best cluster of every row, and their probabilities (-1 and 0 without a second)."""
    order = np.argsort(-proba, axis=1, kind="stable")
    rows = np.arange(len(proba))
    best = order[:, 0]
    if proba.shape[1] == 1:
        return best, proba[rows, best], np.full(len(proba), -1), np.zeros(len(proba))
    return best, proba[rows, best], order[:, 1], proba[rows, order[:, 1]]


def _features_and_proba(estimator: IMCSwAVClustering, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The encoder features of a batch (``transform``) and its cluster probabilities, with one pass of the
    encoder: the softmax of the cluster head on those features, which is what ``predict_proba`` computes
    (``cluster_logits`` is the chosen head on the encoder)."""
    features = np.asarray(estimator.transform(images), dtype=np.float32)  # a DataFrame with set_output
    with torch.no_grad():
        logits = estimator.model_.classify(torch.from_numpy(features).to(estimator.device_))
    return features, torch.softmax(logits.double(), dim=1).cpu().numpy()


def _predict_batches(estimator, root: Path, files: list[str], batch_size: int, typical, progress: bool):
    """The top-two columns, readable paths and failures of ``files``, read a batch at a time as the
    estimator's images; the features of every batch go to ``typical``."""
    channels, height, width = _fitted_image_shape(estimator)
    columns, paths, failures = [], [], []
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for batch in iter_image_batches(root, batch_size, (height, width), channels=channels, files=files):
            if batch.paths:  # channels-first: unambiguous whatever the fitted height and width
                features, proba = _features_and_proba(estimator, batch.images.transpose(0, 3, 1, 2))
                columns.append(_top_two(proba))
                typical.update(features, columns[-1][0], batch.paths)
            paths += batch.paths
            failures += batch.failures
            bar.update(len(batch.paths) + len(batch.failures))
    if not paths:
        raise ValueError(
            f"None of the {len(files)} image files under {root} can be read; the first: {failures[0].error}"
        )
    return [np.concatenate(parts) for parts in zip(*columns)], paths, failures


def _read_typical(root: Path, shape: tuple[int, int, int]):
    """``read(paths)`` for :meth:`TypicalImages.load_images`: the images of ``paths`` under ``root`` as the
    model reads them (``shape`` is its ``(C, H, W)``), and the paths that decoded."""

    def read(paths: list[str]) -> tuple[np.ndarray, list[str]]:
        if not paths:
            return np.empty((0, *shape[1:], shape[0]), np.uint8), []
        batch = next(iter_image_batches(root, len(paths), shape[1:], channels=shape[0], files=paths))
        return batch.images, batch.paths

    return read


def _estimator(model, batch_size: int, device: str | None) -> tuple[IMCSwAVClustering, str | None]:
    """The estimator of ``model``, and the checkpoint it was read from (None for an estimator)."""
    if isinstance(model, IMCSwAVClustering):
        return model, None
    checkpoint = os.fspath(model)
    estimator = IMCSwAVClustering.load(checkpoint, device=device)  # ours: its network runs on whole batches
    return estimator.set_params(batch_size=max(2, batch_size)), checkpoint


def predict_folder(
    model: IMCSwAVClustering | str | os.PathLike,
    path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 256,
    per_cluster: int = 8,
    tile: int = 64,
    device: str | None = None,
    progress: bool = False,
    copy_to: str | os.PathLike | None = None,
    link_to: str | os.PathLike | None = None,
    min_confidence: float | None = None,
) -> FolderPrediction:
    """Assign every image file under a folder to a cluster, a batch at a time.

    Parameters
    ----------
    model : IMCSwAVClustering or str or path-like
        A fitted estimator (on images of any source), or the path of its checkpoint.
    path : str or path-like
        The folder: its image files are found recursively (every format PIL decodes, hidden files and
        folders left out) and read in sorted order, whatever their size and colour mode. Nothing is
        written into it.
    output_dir : str or path-like, default=None
        Where to write ``clusters.csv``, ``clusters.png`` and ``summary.json`` (see the module); created
        before any image is read. None writes nothing.
    batch_size : int, default=256
        Files decoded and predicted at a time: the memory bound. A checkpoint ``model`` also runs its
        network on batches of this size; an estimator keeps its own ``batch_size`` for that.
    per_cluster : int, default=8
        Most typical images (nearest the cluster's centre in feature space) kept per cluster for the
        picture.
    tile : int, default=64
        Side of every image in the picture, in pixels.
    device : str, default=None
        Where to load a checkpoint ``model`` (see :meth:`IMCSwAVClustering.load`).
    progress : bool, default=False
        Show a progress bar (tqdm) on stderr.
    copy_to, link_to : str or path-like, default=None
        A folder (created if needed) to copy every readable file into (:func:`shutil.copy2`: the same
        bytes and times), or to make a symbolic link to it in (absolute targets), at most one of the two:
        ``<folder>/cluster_<k>/<file name>`` (``k`` zero-padded to the digits of the largest cluster
        index), or ``<folder>/uncertain/<file name>`` below ``min_confidence``. A name already taken there
        (by a file of another subfolder, or of an earlier run) becomes ``name (2).ext``, ``name (3).ext``,
        ...: nothing is overwritten. The folder must lie outside ``path``.
    min_confidence : float, default=None
        In [0, 1]: files whose confidence (their cluster's probability) is below it are uncertain, marked
        in ``clusters.csv`` and put into ``uncertain/``. None: no file is.

    Returns
    -------
    FolderPrediction
        The cluster of every readable file, the unreadable files, the most typical images and where the
        files were put.

    Raises
    ------
    DatasetNotFoundError
        When ``path`` is not a folder or holds no image file.
    ValueError
        When no image file can be decoded, the estimator was fitted on feature vectors, ``copy_to`` and
        ``link_to`` are both given, either is a file or inside ``path``, or ``min_confidence`` is NaN or
        outside [0, 1].
    TypeError
        When ``min_confidence`` is not a number, or ``copy_to``/``link_to`` not a path.
    CheckpointError
        When ``model`` is the path of a file that is not an intact checkpoint.
    OSError
        When ``output_dir`` cannot be created or written, or a file cannot be copied or linked.
    """
    root = Path(path).expanduser()
    check_tile(tile)
    min_confidence = check_min_confidence(min_confidence)
    target = placing_target(root, copy_to, link_to)
    estimator, checkpoint = _estimator(model, batch_size, device)
    shape = _fitted_image_shape(estimator)
    files = find_image_files(root)
    if output_dir is not None:
        files = _without_outputs(files, root, _output_folder(output_dir))
    typical = TypicalImages(estimator.model_.predicted_clusters, per_cluster)
    columns, paths, failures = _predict_batches(estimator, root, files, batch_size, typical, progress)
    typical.load_images(_read_typical(root, shape))
    clusters, confidence, next_clusters, next_confidence = columns
    prediction = FolderPrediction(
        str(root.resolve()),
        len(files),
        paths,
        clusters.astype(np.int64),
        confidence.astype(np.float64),
        next_clusters.astype(np.int64),
        next_confidence.astype(np.float64),
        failures,
        typical,
        checkpoint,
        min_confidence,
    )
    if target is not None:
        prediction.placement = place_files(root.resolve(), paths, prediction.folders(), target)
    if output_dir is not None:
        prediction.write(output_dir, tile=tile)
    return prediction
