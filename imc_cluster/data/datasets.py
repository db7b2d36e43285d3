"""Named data sets of the command line, each decoded once into uint8 arrays.

``c10`` (CIFAR-10), ``c20`` (CIFAR-100 with its 20 superclass labels), ``c100`` (CIFAR-100), ``stl10``,
``tiny`` (Tiny-ImageNet-200), ``folder`` (a folder of your own images: an ImageFolder tree of class
folders, or any other layout, unlabelled; see :mod:`~imc_cluster.data.folders`) and ``digits``
(scikit-learn's digits).

The CIFAR and STL-10 files are read by torchvision's own dataset classes, which download them into ``path``
when they are missing and ``download=True``. Tiny-ImageNet and image folders are decoded with PIL on a
thread pool; the decoded arrays are cached in the user cache folder (never in ``path``; see
:func:`~imc_cluster.data.decoding.cached_decode`), keyed by the folder and the relative path, size and
modification time of every image file, so that a changed tree is decoded again.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits
from torchvision import datasets as tv_datasets

from imc_cluster.augmentation.crop_sizes import CropSize, default_crop_sizes
from imc_cluster.data.arrays import as_tensor, channel_statistics, to_uint8
from imc_cluster.data.decoding import DatasetNotFoundError, ImageSize
from imc_cluster.data.folder_splits import load_folder_splits
from imc_cluster.data.folders import ImageFolderData
from imc_cluster.data.tiny_imagenet import load_tiny_imagenet

__all__ = [
    "ImageSet",
    "DatasetNotFoundError",
    "DATASETS",
    "PUBLISHED_NORMALIZATION",
    "load_dataset",
]

#: the published per-channel (mean, std) of the named benchmark sets (docs/method.md#views); the other sets
#: use statistics of their training pixels
PUBLISHED_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "C10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "C20": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "C100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "STL10": ((0.43, 0.42, 0.39), (0.27, 0.26, 0.27)),
    "TINY": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class ImageSet:
    """A data set decoded once into uint8 arrays.

    Attributes
    ----------
    name : str
        Canonical upper-case name: "C10", "C20", "C100", "STL10", "TINY", "FOLDER" or "DIGITS".
    train_images : ndarray of uint8, shape (N, H, W, C)
        Training images, ``C`` in {1, 3}, C-contiguous.
    train_labels : ndarray of int64, shape (N,)
        Class indices; -1 marks an unlabelled image (the STL-10 ``unlabeled`` split, every image of a
        folder without class folders).
    test_images : ndarray of uint8, shape (M, H, W, C)
        Test images.
    test_labels : ndarray of int64, shape (M,)
        Class indices of the test images (-1 for an unlabelled folder).
    classes : list of str
        Class names, by class index; empty for an unlabelled folder.
    mean, std : tuple of float
        Per-channel mean and standard deviation of all training pixels (labelled or not), in [0, 1] units;
        computed on first use.
    normalization : (tuple of float, tuple of float) or None
        The published (mean, std) of the named benchmark sets (:data:`PUBLISHED_NORMALIZATION`), with which
        the command line trains on them; None for "folder" and "digits", which are normalised with their
        training statistics.
    crop_sizes : (int or (int, int), int or (int, int))
        Default sizes of the large and small multi-crop views: sides, or ``(h, w)`` for non-square images
        (see :func:`default_crop_sizes`).
    """

    name: str
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    classes: list[str]
    crop_sizes: tuple[CropSize, CropSize]

    @cached_property
    def _statistics(self) -> tuple[list[float], list[float]]:
        return channel_statistics(as_tensor(self.train_images).permute(0, 3, 1, 2))

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training pixels, in [0, 1] units."""
        return tuple(self._statistics[0])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training pixels, in [0, 1] units."""
        return tuple(self._statistics[1])

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The published (mean, std) of this data set, or None where there is none."""
        return PUBLISHED_NORMALIZATION.get(self.name)

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of the training images that have a label."""
        return self.train_labels >= 0

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


class _Split(NamedTuple):
    """Images and labels of one split."""

    images: np.ndarray
    labels: np.ndarray


def _split(images, labels) -> _Split:
    """A split with C-contiguous uint8 ``(N, H, W, C)`` images and int64 labels."""
    return _Split(np.ascontiguousarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64))


# ---------------------------------------------------------------- torchvision data sets (CIFAR, STL-10)


def _torchvision_split(cls, title: str, path: Path, download: bool, **split):
    """One split from torchvision's dataset class ``cls``, with one clear error when its files are
    missing or fail torchvision's md5 check and cannot be downloaded."""
    try:
        return cls(str(path), download=download, **split)
    except (RuntimeError, OSError) as error:
        raise DatasetNotFoundError(_torchvision_message(cls, title, path, download, error)) from error


def _torchvision_message(cls, title: str, path: Path, download: bool, error: Exception) -> str:
    """Why the files of torchvision's ``cls`` could not be read under ``path``."""
    expected = [name for name, _ in cls.train_list + cls.test_list]
    expected += [cls.meta["filename"]] if hasattr(cls, "meta") else []
    missing = [name for name in expected if not (path / cls.base_folder / name).is_file()]
    if len(missing) == len(expected):
        state = "none of them is there"
    elif missing:
        state = f"missing {', '.join(missing)}"
    else:
        state = "the files are there but fail torchvision's md5 check (corrupt or not the original release)"
    outcome = f"the download failed: {error}" if download else "download=False, so nothing was downloaded"
    return (
        f"{title} not found under {path}: expected {cls.base_folder}/ with {', '.join(expected)} "
        f"(or the archive {cls.filename}, extracted when download=True); {state}, and {outcome}."
    )


def _load_cifar10(path: Path, download: bool) -> tuple[_Split, _Split, list[str]]:
    """CIFAR-10 through torchvision's CIFAR10."""
    train, test = (
        _torchvision_split(tv_datasets.CIFAR10, "CIFAR-10", path, download, train=is_train)
        for is_train in (True, False)
    )
    return _split(train.data, train.targets), _split(test.data, test.targets), list(train.classes)


def _unpickle(file: Path) -> dict:
    """A CIFAR python pickle, read as torchvision reads it (its Python 2 byte strings become str)."""
    with open(file, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _load_cifar100(path: Path, download: bool, coarse: bool) -> tuple[_Split, _Split, list[str]]:
    """CIFAR-100 through torchvision's CIFAR100: its 100 fine labels, or (``coarse``) the 20 superclass
    labels and names read from the same pickles, which torchvision does not expose."""
    train, test = (
        _torchvision_split(tv_datasets.CIFAR100, "CIFAR-100", path, download, train=is_train)
        for is_train in (True, False)
    )
    if not coarse:
        return _split(train.data, train.targets), _split(test.data, test.targets), list(train.classes)
    folder = path / tv_datasets.CIFAR100.base_folder
    names = list(_unpickle(folder / "meta")["coarse_label_names"])
    return (
        _split(train.data, _unpickle(folder / "train")["coarse_labels"]),
        _split(test.data, _unpickle(folder / "test")["coarse_labels"]),
        names,
    )


def _load_stl10(path: Path, download: bool) -> tuple[_Split, _Split, list[str]]:
    """STL-10 through torchvision's STL10: train = the 5,000 labelled train images, then the 100,000
    ``unlabeled`` ones with label -1."""
    train = _torchvision_split(tv_datasets.STL10, "STL-10", path, download, split="train+unlabeled")
    test = _torchvision_split(tv_datasets.STL10, "STL-10", path, download, split="test")
    classes = getattr(test, "classes", None) or [str(index) for index in range(10)]
    return (
        _split(train.data.transpose(0, 2, 3, 1), train.labels),
        _split(test.data.transpose(0, 2, 3, 1), test.labels),
        classes,
    )


def _load_tiny(
    path: Path, download: bool, cache_dir: str | os.PathLike | None = None
) -> tuple[_Split, _Split, list[str]]:
    """Tiny-ImageNet-200 (:func:`~imc_cluster.data.tiny_imagenet.load_tiny_imagenet`)."""
    train, test, names = load_tiny_imagenet(path, download, cache_dir)
    return _split(*train), _split(*test), names


def _folder_split(data: ImageFolderData) -> _Split:
    """One split of an image folder; unlabelled images get the label -1."""
    labels = np.full(len(data.images), -1) if data.labels is None else data.labels
    return _split(data.images, labels)


def _load_folder(
    path: Path,
    download: bool,
    image_size: ImageSize | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[_Split, _Split, list[str]]:
    """An image folder (:func:`~imc_cluster.data.folder_splits.load_folder_splits`); one tree for both
    splits gives the same split object twice."""
    train, test = load_folder_splits(path, image_size, cache_dir=cache_dir)
    train_split = _folder_split(train)
    return train_split, train_split if test is train else _folder_split(test), train.classes


def _load_digits(path: Path, download: bool) -> tuple[_Split, _Split, list[str]]:
    """scikit-learn's 1,797 8x8 digits, 0..16 scaled to 0..255; no split, so train = test = all."""
    digits = load_digits()
    images = _split(to_uint8(digits.images[..., None], (0.0, 16.0)), digits.target)
    return images, images, [str(name) for name in digits.target_names]


_LOADERS = {
    "c10": _load_cifar10,
    "c20": partial(_load_cifar100, coarse=True),
    "c100": partial(_load_cifar100, coarse=False),
    "stl10": _load_stl10,
    "tiny": _load_tiny,
    "folder": _load_folder,
    "digits": _load_digits,
}

#: accepted data set names (case-insensitive)
DATASETS: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(
    name: str,
    path: str | os.PathLike,
    *,
    download: bool = True,
    image_size: ImageSize | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """Load a named data set into uint8 arrays.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`, case-insensitive: "c10" (CIFAR-10), "c20" (CIFAR-100 with its 20
        superclass labels), "c100" (CIFAR-100), "stl10", "tiny" (Tiny-ImageNet-200), "folder" (a folder
        of image files) or "digits" (scikit-learn's digits).
    path : str or path-like
        Folder that holds the data set, or receives it when downloaded. "c10", "c20", "c100", "stl10":
        torchvision's layout (``cifar-10-batches-py/``, ``cifar-100-python/``, ``stl10_binary/``).
        "tiny": ``tiny-imagenet-200/`` under ``path``, or ``path`` itself. "folder": ``train/`` and
        ``test/`` folders; else one folder, ``path/train`` when it exists (without ``test/``) or ``path``
        itself, that serves as both splits. A folder of at least two class folders and no loose image
        file is labelled by class folder; any other layout (flat, nested, one folder) is unlabelled, with
        labels -1 and no class (see :func:`~imc_cluster.data.folder_splits.load_folder_splits`). A ``test/``
        without ``train/`` is an error. Ignored for "digits", which has no split either: its train and
        test splits are the same 1,797 images.
    download : bool, default=True
        Download CIFAR, STL-10 or Tiny-ImageNet into ``path`` when its files are missing (or extract the
        original archive found there). Image trees are never downloaded.
    image_size : int or (int, int), default=None
        "folder" only: bring every image to ``S x S`` or ``(H, W)`` pixels by a centre crop to that
        aspect and an antialiased resize. None keeps the images' size, which must then be one.
    cache_dir : str or path-like, default=None
        "tiny" and "folder": the user cache folder of the decoded images (see Notes); None:
        ``$IMC_CLUSTER_CACHE_DIR``, else the platform's (e.g. ``~/.cache/imc_cluster``).

    Returns
    -------
    ImageSet
        The decoded splits, class names, training-pixel mean and std, and default crop sizes.

    Raises
    ------
    ValueError
        For an unknown name, ``image_size`` with another data set than "folder", image files of
        different sizes without ``image_size``, or an image file that cannot be decoded
        (corrupt, truncated, empty or not an image) or has more pixels than PIL's limit,
        ``PIL.Image.MAX_IMAGE_PIXELS`` (a possible decompression bomb); the message names the file.
    DatasetNotFoundError
        A :class:`FileNotFoundError` naming ``path`` and the files expected there, when they are missing
        and cannot be downloaded, or the ``train/`` folder of an image tree that has only ``test/``.

    Notes
    -----
    Tiny-ImageNet and ImageFolder images are decoded on a thread pool and cached in ``decoded/`` of the
    user cache folder (:func:`~imc_cluster.core.cache.cache_root`), never in ``path``; the key covers the
    folder's absolute path and the relative path, size and mtime of every image file, so that adding,
    removing or touching a file invalidates the cache. Where the cache cannot be written the images are
    decoded on every call. Image folders whose images are all grey give
    one channel; otherwise grey images are repeated over three channels. Grey images of more than 8 bits
    (16-bit and 32-bit integer PNG or TIFF files, and float TIFF files) are scaled to 0..255, not clipped:
    integers over 0..65535 and floats over [0, 1] when their values lie within that range, else over
    their own minimum and maximum.
    """
    key = str(name).lower()
    if key not in _LOADERS:
        raise ValueError(
            f"Unknown dataset {name!r}; the valid names are {', '.join(DATASETS)} (case-insensitive)."
        )
    if image_size is not None and key != "folder":
        raise ValueError(
            f"image_size resizes the files of an image folder: it applies to 'folder' only, not to {name!r}."
        )
    loader = partial(_load_folder, image_size=image_size) if key == "folder" else _LOADERS[key]
    if key in ("tiny", "folder"):  # the loaders that decode image files
        loader = partial(loader, cache_dir=cache_dir)
    train, test, classes = loader(Path(path).expanduser(), download)
    return ImageSet(
        key.upper(),
        train.images,
        train.labels,
        test.images,
        test.labels,
        list(classes),
        default_crop_sizes(*train.images.shape[1:3]),
    )
