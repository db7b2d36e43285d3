"""Folders of your own image files, in any layout: finding the files, the class-folder rule, and reading.

:func:`find_image_files` lists every image file under a folder, recursively and in sorted order: files of
every format PIL decodes, by extension (case-insensitive), leaving out hidden files and folders (names
starting with "."). :func:`load_image_folder` decodes them into one uint8 array (cached in the user cache
folder, never in the data folder; see :mod:`~imc_cluster.data.decoding`), with class labels when the folder
is an ImageFolder tree of class folders, unreadable files left out with one :class:`SkippedImagesWarning`;
:func:`iter_image_batches` reads a folder of any size a batch at a time, in bounded memory.
:func:`~imc_cluster.data.folder_splits.load_folder_splits` reads the ``train/`` and ``test/`` layout of the
``folder`` data set.

Images of different sizes are brought to one with ``image_size``: each is centre-cropped to the target's
aspect, then resized with PIL's antialiased Lanczos filter.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile

from imc_cluster.core.numbers import check_integer
from imc_cluster.data.decoding import (
    ON_ERROR,
    DatasetNotFoundError,
    ImageFailure,
    ImageSize,
    cached_decode,
    check_image_size,
    decode_images,
)

__all__ = [
    "ImageFolderData",
    "ImageBatch",
    "SkippedImagesWarning",
    "image_extensions",
    "find_image_files",
    "load_image_folder",
    "iter_image_batches",
    "class_folders",
    "folder_classes",
    "read_folder",
    "warn_skipped",
]

#: values of the ``labels`` option
LABEL_RULES = ("auto", "folders", None)


def _decodable(image_format: str) -> bool:
    """Whether PIL decodes files of ``image_format``: it opens them (JPEG's opener also reads MPO files),
    and is not a stub without a handler nor MPEG video, which PIL identifies but never decodes."""
    if image_format == "MPO":
        return True
    factory = Image.OPEN.get(image_format, (None,))[0]
    stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
    return factory is not None and not stub and image_format != "MPEG"


def image_extensions() -> frozenset[str]:
    """Extensions (lower case, with the dot) of the image formats PIL decodes, as registered with PIL now
    (plugins registered later count from then on)."""
    Image.init()
    return frozenset(ext.lower() for ext, name in Image.registered_extensions().items() if _decodable(name))


def _raise(error: OSError) -> None:
    raise error


def find_image_files(path: str | os.PathLike) -> list[str]:
    """Every image file under ``path``, recursively: paths relative to ``path`` with "/" separators, sorted
    by their components (strings, not Path objects, so that a list of millions stays small).

    Image files are those with the extension of a format PIL decodes (:func:`image_extensions`),
    case-insensitive, that are regular files (or links to one: a dangling link, a pipe or a device is left
    out). Hidden files and folders (a name starting with ".") are left out. Symbolic links are followed,
    each folder read once.

    Raises
    ------
    DatasetNotFoundError
        When ``path`` is not a folder, or holds no image file.
    OSError
        When a folder under ``path`` cannot be listed.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"Image folder {root} not found (or not a folder).")
    extensions, found, seen = image_extensions(), [], set()
    for folder, subfolders, names in os.walk(root, onerror=_raise, followlinks=True):
        real = os.path.realpath(folder)
        subfolders[:] = [] if real in seen else [name for name in subfolders if not name.startswith(".")]
        if real not in seen:
            prefix = Path(folder).relative_to(root).as_posix() + "/" if Path(folder) != root else ""
            found += [
                prefix + name
                for name in names
                if not name.startswith(".")
                and os.path.splitext(name)[1].lower() in extensions
                and os.path.isfile(os.path.join(folder, name))
            ]
        seen.add(real)
    if not found:
        raise DatasetNotFoundError(
            f"No image files under {root}: none has the extension of a format PIL "
            "reads (such as .png, .jpg, .webp, .tif); hidden files and folders are "
            "skipped."
        )
    return sorted(found, key=lambda name: name.split("/"))


@dataclass
class ImageFolderData:
    """The decoded image files of a folder.

    Attributes
    ----------
    images : ndarray of uint8, shape (N, H, W, C)
        The decoded images, ``C`` in {1, 3}, in the order of ``paths``.
    paths : list of str
        Path of every image, relative to ``root`` with "/" separators, in sorted order (see
        :func:`find_image_files`); ``root / path`` is the file.
    labels : ndarray of int64, shape (N,), or None
        Class index of every image (its top-level folder's index in ``classes``), or None when unlabelled.
    classes : list of str
        Names of the class folders, sorted; empty when unlabelled.
    failures : list of ImageFailure
        The files that could not be decoded (with ``on_error="skip"``): ``(path, error)``, path relative
        to ``root``.
    root : str
        The folder, as an absolute path.
    """

    images: np.ndarray = field(repr=False)
    paths: list[str] = field(repr=False)
    labels: np.ndarray | None = field(repr=False)
    classes: list[str]
    failures: list[ImageFailure]
    root: str


class ImageBatch(NamedTuple):
    """One batch of :func:`iter_image_batches`: the uint8 ``(n, H, W, C)`` images, their paths (relative to
    the folder, "/" separators) and the files of the batch that could not be decoded."""

    images: np.ndarray
    paths: list[str]
    failures: list[ImageFailure]


def _check_options(
    labels: str | None, channels: int | None, on_error: str, *, any_channels: bool = True
) -> None:
    """Validate the options; ``any_channels`` False leaves only 1 and 3 for ``channels``."""
    if labels not in LABEL_RULES:
        raise ValueError(f"labels must be 'auto', 'folders' or None, got {labels!r}.")
    if channels not in ((None, 1, 3) if any_channels else (1, 3)) or isinstance(channels, bool):
        choices = "None (grey when every image is grey, else RGB), 1 or 3" if any_channels else "1 or 3"
        raise ValueError(f"channels must be {choices}, got {channels!r}.")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")


def class_folders(files: list[str]) -> tuple[list[str], int]:
    """The sorted top-level folders that hold the image ``files`` (relative names), and the number of
    files at the top."""
    tops = {file.split("/")[0] for file in files if "/" in file}
    return sorted(tops), sum("/" not in file for file in files)


def folder_classes(files: list[str], tree: Path, labels: str | None) -> list[str] | None:
    """The class names by the ``labels`` rule, or None for unlabelled images."""
    classes, loose = class_folders(files)
    if labels == "folders":
        if loose or not classes:
            raise ValueError(
                f"labels='folders' needs every image file of {tree} in a class folder, but "
                f"{loose} lie directly in it; move them into class folders, or use "
                "labels='auto'."
            )
        return classes
    return classes if labels == "auto" and len(classes) >= 2 and not loose else None


def read_folder(
    tree: Path,
    paths: list[str],
    classes: list[str] | None,
    root: Path,
    split: str,
    size: tuple[int, int] | None,
    channels: int | None,
    on_error: str,
    *,
    keep_empty_classes: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> ImageFolderData:
    """Decode the files ``paths`` of ``tree``, labelled by ``classes``, through the cache of split
    ``split`` of the data folder ``root`` in the user cache ``cache_dir`` (see
    :func:`~imc_cluster.data.decoding.cached_decode`). A class folder none of whose files decodes is no
    class (its files are failures), unless ``keep_empty_classes`` (a test split labelled by the training
    split's classes)."""
    files = [tree / path for path in paths]
    decoded = cached_decode(files, root, split, channels, size, on_error, cache_dir=cache_dir)
    if len(decoded.images) == 0:
        raise ValueError(
            f"None of the {len(files)} image files under {tree} can be decoded; the first: "
            f"{decoded.failures[0][1]}"
        )
    failed = {index for index, _ in decoded.failures}
    keep = [index for index in range(len(files)) if index not in failed]
    labels = None
    if classes is not None and not keep_empty_classes:
        readable = {paths[at].split("/")[0] for at in keep}
        kept = [name for name in classes if name in readable]
        # fewer than two readable class folders: unlabelled, as a tree of one class folder is
        classes = kept if len(kept) >= 2 or len(classes) < 2 else None
    if classes is not None:
        index = {name: label for label, name in enumerate(classes)}
        labels = np.array([index[paths[at].split("/")[0]] for at in keep], dtype=np.int64)
    failures = [ImageFailure(paths[at], error) for at, error in decoded.failures]
    return ImageFolderData(
        decoded.images, [paths[at] for at in keep], labels, list(classes or []), failures, str(tree.resolve())
    )


def load_image_folder(
    path: str | os.PathLike,
    image_size: ImageSize | None = None,
    *,
    labels: str | None = "auto",
    channels: int | None = None,
    on_error: str = "skip",
    cache_dir: str | os.PathLike | None = None,
) -> ImageFolderData:
    """Decode every image file under a folder, flat or nested, into one uint8 array.

    Parameters
    ----------
    path : str or path-like
        The folder. Its image files are found by :func:`find_image_files` (recursively, every format PIL
        decodes, hidden files and folders left out) and read in sorted order.
    image_size : int or (int, int), default=None
        Size ``S`` (square) or ``(H, W)`` of the images: each is centre-cropped to that aspect, then
        resized (PIL's antialiased Lanczos filter). None keeps their size, which must then be one.
    labels : {"auto", "folders", None}, default="auto"
        "auto": a folder of at least two top-level class folders, and no image file directly in it, is an
        ImageFolder tree, labelled by class folder; any other folder (flat, one folder, loose images at
        the top) is unlabelled. "folders": always labelled by top-level folder (an image file directly in
        ``path`` is then an error). None: unlabelled.
    channels : {None, 1, 3}, default=None
        None: one grey channel when every image is grey, else RGB (grey images repeated over the three
        channels). 1 or 3 make every image grey (PIL's luma) or RGB.
    on_error : {"skip", "raise"}, default="skip"
        For a file that cannot be decoded (corrupt, truncated, empty, not an image, over PIL's pixel limit
        ``Image.MAX_IMAGE_PIXELS``): leave it out, list it in ``failures`` and name it in one
        :class:`SkippedImagesWarning` for the whole folder (the first few by name, the others counted), as
        the command line does; or raise a ValueError naming it.
    cache_dir : str or path-like, default=None
        The user cache folder of the decoded images (see Notes); None: ``$IMC_CLUSTER_CACHE_DIR``, else
        the platform's (e.g. ``~/.cache/imc_cluster``).

    Returns
    -------
    ImageFolderData
        Images, their paths relative to ``path``, labels and class names (or None and []), the failures,
        and the folder's absolute path.

    Raises
    ------
    DatasetNotFoundError
        When ``path`` is not a folder or holds no image file.
    ValueError
        For bad options, images of different sizes without ``image_size``, an undecodable file with
        ``on_error="raise"``, or when no file can be decoded.

    Warns
    -----
    SkippedImagesWarning
        Once, naming the files left out, when some cannot be decoded (``on_error="skip"``).

    Notes
    -----
    Nothing is written into ``path``. The decoded images are cached in ``decoded/`` of the user cache
    folder (:func:`~imc_cluster.core.cache.cache_root`), one subfolder per data folder, keyed by the
    settings and the relative path, size and modification time of every file (see
    :mod:`~imc_cluster.data.decoding`); where the cache cannot be written they are decoded on every call.
    ``imc-cluster cache --clear`` (or :func:`~imc_cluster.core.cache.clear_cache`) empties the cache.
    """
    size = check_image_size(image_size)
    _check_options(labels, channels, on_error)
    tree = Path(path).expanduser()
    files = find_image_files(tree)
    classes = folder_classes(files, tree, labels)
    data = read_folder(tree, files, classes, tree, "all", size, channels, on_error, cache_dir=cache_dir)
    return warn_skipped(data)


def iter_image_batches(
    path: str | os.PathLike,
    batch_size: int = 256,
    image_size: ImageSize | None = None,
    *,
    channels: int = 3,
    on_error: str = "skip",
    files: Sequence[str] | None = None,
) -> Iterator[ImageBatch]:
    """Read the image files under a folder a batch at a time, in bounded memory, for folders of any size.

    Each batch of ``batch_size`` files (in sorted order) is decoded on a thread pool when the iterator
    reaches it, never cached; only one batch of images exists at a time.

    Parameters
    ----------
    path : str or path-like
        The folder; paths are given relative to it.
    batch_size : int, default=256
        Files per batch.
    image_size : int or (int, int), default=None
        Size of every image, as in :func:`load_image_folder`; None keeps their size, which must be one.
    channels : {1, 3}, default=3
        Channels of every image: grey (PIL's luma) or RGB.
    on_error : {"raise", "skip"}, default="skip"
        For a file that cannot be decoded: raise a ValueError naming it, or list it in the batch's
        ``failures``.
    files : sequence of str, default=None
        The image files to read, relative to ``path`` with "/" separators; default
        :func:`find_image_files` of ``path`` (pass its result to count the files first).

    Yields
    ------
    ImageBatch
        ``(images, paths, failures)`` of each batch; ``images`` is empty when no file of it decodes.
    """
    size = check_image_size(image_size)
    _check_options(None, channels, on_error, any_channels=False)
    batch_size = check_integer("batch_size", batch_size)
    root = Path(path).expanduser()
    if isinstance(files, (str, bytes, os.PathLike)):
        raise TypeError(
            f"files must be a list of file names, got the single name {files!r}; pass [{files!r}]."
        )
    files = find_image_files(root) if files is None else list(files)
    first = None  # (path, shape) of the first image, which every later one must match without image_size
    for start in range(0, len(files), batch_size):
        paths = [str(name) for name in files[start : start + batch_size]]
        decoded = decode_images([root / name for name in paths], channels, size, on_error)
        failed = {index for index, _ in decoded.failures}
        if len(decoded.images):
            shape = decoded.images.shape[1:3]
            first = first or (paths[min(set(range(len(paths))) - failed)], shape)
            if shape != first[1]:
                raise ValueError(
                    f"Images differ in size: {first[0]} is {first[1][0]}x{first[1][1]} but the "
                    f"images from {paths[0]} on are {shape[0]}x{shape[1]} (height x width); "
                    "pass image_size= to centre-crop and resize every image to one size."
                )
        yield ImageBatch(
            decoded.images,
            [paths[at] for at in range(len(paths)) if at not in failed],
            [ImageFailure(paths[at], error) for at, error in decoded.failures],
        )


class SkippedImagesWarning(UserWarning):
    """Image files of a folder were left out because they cannot be decoded."""


#: skipped files named one by one in the warning; the others are counted
_NAMED_SKIPS = 5


def warn_skipped(data: ImageFolderData) -> ImageFolderData:
    """``data``, after one :class:`SkippedImagesWarning` that names the files it left out, if any (the
    first few with their error; the others counted)."""
    if data.failures:
        named = "; ".join(f"{failure.path}: {failure.error}" for failure in data.failures[:_NAMED_SKIPS])
        more = len(data.failures) - _NAMED_SKIPS
        warnings.warn(
            f"Skipped {len(data.failures)} image file(s) under {data.root} that cannot be decoded "
            f"({named}{f'; and {more} more' if more > 0 else ''}).",
            SkippedImagesWarning,
            stacklevel=3,
        )
    return data
