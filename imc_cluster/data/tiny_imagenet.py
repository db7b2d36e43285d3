"""Tiny-ImageNet-200 as its archive unpacks: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
``val/images/*.JPEG`` with ``val/val_annotations.txt``, and optionally ``words.txt`` for the class names;
downloaded into the given folder when it is missing and download is allowed.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.datasets.utils import download_and_extract_archive

from imc_cluster.data.decoding import DatasetNotFoundError, cached_decode

__all__ = ["TINY_URL", "load_tiny_imagenet"]

TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_TINY_FOLDER = "tiny-imagenet-200"
_TINY_EXPECTED = (
    f"{_TINY_FOLDER}/ (in it, or it itself) with wnids.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG and val/val_annotations.txt (or the archive tiny-imagenet-200.zip, "
    "extracted when download=True)"
)


def load_tiny_imagenet(
    path: Path, download: bool, cache_dir: str | os.PathLike | None = None
) -> tuple[tuple[np.ndarray, list[int]], tuple[np.ndarray, list[int]], list[str]]:
    """Tiny-ImageNet-200's images and labels: train from ``train/<wnid>/images``, test = the labelled
    ``val`` split; and the class names.

    Label = index of the wnid in the sorted wnids.txt (the order ImageFolder gives ``train/``); class names
    from words.txt, else the wnids. Every image is decoded as RGB (a few are stored grey), and cached
    (:func:`~imc_cluster.data.decoding.cached_decode`).

    Raises
    ------
    DatasetNotFoundError
        When the folder, one of its files or its images are missing and cannot be downloaded.
    ValueError
        When val_annotations.txt names a class that wnids.txt lacks.
    """
    root = _tiny_root(path, download)
    wnids = sorted(_read_lines(root / "wnids.txt"))
    index = {wnid: label for label, wnid in enumerate(wnids)}
    train_files, train_labels = _scan(root / "train", index)
    val_files, val_labels = [], []
    for line in _read_lines(root / "val" / "val_annotations.txt"):
        file, wnid = line.split("\t")[:2]
        if wnid not in index:
            raise ValueError(f"{root / 'val' / 'val_annotations.txt'} names {wnid}, which wnids.txt lacks.")
        val_files.append(root / "val" / "images" / file)
        val_labels.append(index[wnid])
    words_file = root / "words.txt"
    words = dict(line.split("\t", 1) for line in _read_lines(words_file)) if words_file.is_file() else {}
    return (
        (cached_decode(train_files, root, "train", 3, cache_dir=cache_dir).images, train_labels),
        (cached_decode(val_files, root, "val", 3, cache_dir=cache_dir).images, val_labels),
        [words.get(wnid, wnid).strip() for wnid in wnids],
    )


def _scan(directory: Path, class_to_idx: dict[str, int]) -> tuple[list[Path], list[int]]:
    """Image files under ``directory/<class>/`` (torchvision's make_dataset, sorted) and their labels; every
    class must have some."""
    try:
        samples = make_dataset(directory, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise DatasetNotFoundError(f"Missing images under {directory}: {error}") from error
    if not samples:
        raise DatasetNotFoundError(f"No image files ({', '.join(IMG_EXTENSIONS)}) under {directory}.")
    return [Path(file) for file, _ in samples], [label for _, label in samples]


def _find_tiny(path: Path) -> Path | None:
    """The tiny-imagenet-200 folder, ``path/tiny-imagenet-200`` or ``path``: the one with wnids.txt."""
    return next((root for root in (path / _TINY_FOLDER, path) if (root / "wnids.txt").is_file()), None)


def _tiny_root(path: Path, download: bool) -> Path:
    """The tiny-imagenet-200 folder under ``path``, downloaded there first if missing and ``download``."""
    root = _find_tiny(path)
    if root is None and download:
        try:
            download_and_extract_archive(TINY_URL, str(path))
        except (RuntimeError, OSError, zipfile.BadZipFile) as error:
            raise DatasetNotFoundError(
                f"Tiny-ImageNet not found under {path}: expected {_TINY_EXPECTED}, "
                f"and the download failed: {error}."
            ) from error
        root = _find_tiny(path)
    if root is None:
        outcome = "the downloaded archive does not hold it" if download else "download=False"
        raise DatasetNotFoundError(
            f"Tiny-ImageNet not found under {path}: expected {_TINY_EXPECTED}; {outcome}."
        )
    return root


def _read_lines(file: Path) -> list[str]:
    """Non-empty lines of a text file, stripped."""
    if not file.is_file():
        raise DatasetNotFoundError(f"Missing the Tiny-ImageNet file {file}.")
    return [line.strip() for line in file.read_text().splitlines() if line.strip()]
