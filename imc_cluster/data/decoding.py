"""Image files: decoding with PIL on a thread pool, with every failure naming its file, and a cache.

Image files are decoded into one uint8 array (:func:`decode_images`), optionally brought to one size on
the way: a centre crop to the target's aspect, then an antialiased resize (:func:`fit_to_size`). The array
is cached in the user cache folder (:func:`~imc_cluster.core.cache.cache_root`: ``cache_dir``, else
``$IMC_CLUSTER_CACHE_DIR``, else e.g. ``~/.cache/imc_cluster``), as
``decoded/<folder>-<hash>/<split>-<key>.npz``: one subfolder per data folder (by its resolved absolute
path), keyed by the decoding settings and the relative path, size and modification time of every file, so
that a changed folder is decoded again (:func:`cached_decode`). Nothing is ever written into the data
folder. Each file is decoded by :func:`~imc_cluster.data.pil_images.pil_to_array`'s rule, in full (a
truncated file fails), and within PIL's pixel limit (a decompression bomb fails). A file that cannot be
decoded raises, or with ``on_error="skip"`` is left out and reported.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps

from imc_cluster.core.cache import cache_folder, cache_root
from imc_cluster.core.files import atomic_write
from imc_cluster.core.numbers import is_integer
from imc_cluster.data.pil_images import pil_to_array

__all__ = [
    "DECODED_FOLDER",
    "ON_ERROR",
    "ImageSize",
    "DatasetNotFoundError",
    "ImageFailure",
    "DecodedImages",
    "check_image_size",
    "fit_to_size",
    "decode_file",
    "decode_images",
    "cached_decode",
]

#: subfolder of the user cache (:func:`~imc_cluster.core.cache.cache_root`) that holds decoded image trees
DECODED_FOLDER = "decoded"
#: what to do with a file that cannot be decoded
ON_ERROR = ("raise", "skip")
#: a target image size: one side (square images) or (height, width)
ImageSize = int | tuple[int, int]
#: part of every cache key; bump it when the decoding changes
_CACHE_VERSION = 5
#: the most image files per thread-pool task
_DECODE_CHUNK = 256
#: decoding threads (the default of ThreadPoolExecutor)
_WORKERS = min(32, (os.cpu_count() or 1) + 4)
#: resize filter (antialiased when shrinking), and the gap beyond which PIL first shrinks by an integer
#: factor (its documented near-exact speed-up for large reductions)
_RESAMPLE = Image.Resampling.LANCZOS
_REDUCING_GAP = 3.0


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not where they were looked for, and could not be downloaded."""


class ImageFailure(NamedTuple):
    """An image file that could not be decoded: its path and the reason."""

    path: str
    error: str


class DecodedImages(NamedTuple):
    """The decoded files: ``images`` of the decodable ones, in order, and ``(index, message)`` of the
    others (``on_error="skip"``)."""

    images: np.ndarray
    failures: list[tuple[int, str]]


def check_image_size(value) -> tuple[int, int] | None:
    """An ``image_size`` as ``(height, width)``: a positive int (square) or a pair of them; None stays."""
    if value is None:
        return None
    sides = (value, value) if isinstance(value, Integral) else value
    try:
        sides = tuple(sides)
    except TypeError:
        sides = ()
    if len(sides) != 2 or not all(is_integer(s) and s > 0 for s in sides):
        raise ValueError(
            f"image_size must be a positive int (square images) or a pair (height, width) of "
            f"positive ints, got {value!r}."
        )
    return int(sides[0]), int(sides[1])


def _crop_box(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centred box of ``width x height`` pixels with the aspect of ``size`` (height, width)."""
    target_height, target_width = size
    if width * target_height > height * target_width:  # wider than the target: crop left and right
        kept = min(width, max(1, round(height * target_width / target_height)))
        left = (width - kept) // 2
        return left, 0, left + kept, height
    kept = min(height, max(1, round(width * target_height / target_width)))
    top = (height - kept) // 2
    return 0, top, width, top + kept


def fit_to_size(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 ``(h, w, C)`` image brought to ``size = (height, width)``: centre-cropped to that aspect,
    then resized by PIL's Lanczos filter (antialiased); an image of that size already is returned as is."""
    height, width = array.shape[:2]
    if (height, width) == tuple(size):
        return array
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    image = image.crop(_crop_box(width, height, size))
    resized = np.asarray(image.resize((size[1], size[0]), _RESAMPLE, reducing_gap=_REDUCING_GAP))
    return resized[..., None] if resized.ndim == 2 else resized


def _check_pixel_limit(image: Image.Image) -> None:
    """Raise PIL's DecompressionBombError for an image over ``Image.MAX_IMAGE_PIXELS``, where PIL itself only
    warns (it raises at twice that size)."""
    limit, pixels = Image.MAX_IMAGE_PIXELS, image.width * image.height
    if limit is not None and pixels > limit:
        raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels.")


#: EXIF orientations that turn the image by a quarter (its upright height is the stored width)
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _draft(image: Image.Image, size: tuple[int, int]) -> None:
    """Let a JPEG decode at a reduced scale (PIL's draft mode) that still covers ``size`` once the image is
    turned upright by its EXIF orientation and centre-cropped."""
    height, width = image.height, image.width
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _QUARTER_TURNS:
        height, width = width, height
    scale = max(size[0] / height, size[1] / width)
    if scale < 1:
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def decode_file(file: Path, channels: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as a uint8 ``(H, W, 1)`` grey or ``(H, W, 3)`` RGB array.

    ``channels`` None keeps grey files grey (:func:`~imc_cluster.data.pil_images.pil_to_array`); 3 makes every
    image RGB, 1 every image grey (PIL's luma of RGB). ``size`` ``(height, width)`` brings the image to
    that size (:func:`fit_to_size`; JPEG files are decoded at the smallest sufficient scale). The image is
    loaded in full, so that a truncated file fails here and is not padded. Any failure, and an image over
    PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``), raises one ValueError that names the file.
    """
    try:
        with Image.open(file) as image:
            _check_pixel_limit(image)
            if size is not None:
                _draft(image, size)
            image.load()
            upright = ImageOps.exif_transpose(image)  # as viewers show it (EXIF orientation of photos)
            array = pil_to_array(upright, rgb=channels == 3)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"The image file {file} exceeds PIL's pixel limit, Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS} (a possible decompression bomb): {error}"
        ) from error
    except Exception as error:  # PIL's decoders fail on damaged files with many kinds of error
        raise ValueError(f"Cannot decode the image file {file}: {error}") from error
    if channels == 1 and array.shape[2] == 3:
        array = np.asarray(Image.fromarray(array).convert("L"))[..., None]
    return array if size is None else fit_to_size(array, size)


def _first_decodable(
    files: list[Path], channels, size, on_error: str, failures: dict[int, str]
) -> tuple[int, np.ndarray | None]:
    """Index and image of the first file that decodes (the others before it go to ``failures``)."""
    for index, file in enumerate(files):
        try:
            return index, decode_file(file, channels, size)
        except ValueError as error:
            if on_error == "raise":
                raise
            failures[index] = str(error)
    return len(files), None


def decode_images(
    files: list[Path],
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    on_error: str = "raise",
) -> DecodedImages:
    """Decode image files on a thread pool into one ``(N, H, W, C)`` uint8 array.

    Without ``size`` the files must share one size. ``channels`` None gives one grey channel when every
    file is grey, else RGB with grey images repeated over the channels; 1 or 3 force that many (see
    :func:`decode_file`). A file that cannot be decoded raises (``on_error="raise"``) or is left out and
    reported in ``failures`` (``"skip"``); when none decodes, ``images`` is empty. An image over PIL's pixel
    limit is such a failure, named once by us (PIL's own DecompressionBombWarning is not shown beside it).
    """
    with warnings.catch_warnings():  # around the whole pool: the filters are process-wide
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decode_images(files, channels, size, on_error)


def _decode_images(files: list[Path], channels: int | None, size: tuple[int, int] | None, on_error: str):
    failures: dict[int, str] = {}
    start, first = _first_decodable(files, channels, size, on_error, failures)
    if first is None:
        empty = np.empty((0, *(size or (0, 0)), channels or 3), np.uint8)
        return DecodedImages(empty, sorted(failures.items()))
    images = np.empty((len(files), *first.shape[:2], channels or 3), dtype=np.uint8)
    images[start] = first

    def decode(index: int) -> bool:
        try:
            array = decode_file(files[index], channels, size)
        except ValueError as error:
            if on_error == "raise":
                raise
            failures[index] = str(error)
            return False
        if array.shape[:2] != first.shape[:2]:
            raise ValueError(
                f"Images differ in size: {files[start]} is {first.shape[0]}x{first.shape[1]} but "
                f"{files[index]} is {array.shape[0]}x{array.shape[1]} (height x width); resize them, or pass "
                "image_size= (--image_size on the command line) to centre-crop and resize every image to it."
            )
        images[index] = array
        return array.shape[2] == 3

    rest = range(start + 1, len(files))
    step = max(1, min(_DECODE_CHUNK, math.ceil(len(rest) / _WORKERS)))

    def decode_chunk(at: int) -> bool:
        return [decode(index) for index in rest[at : at + step]].count(True) > 0

    pool = ThreadPoolExecutor(_WORKERS)
    try:
        color = any(list(pool.map(decode_chunk, range(0, len(rest), step))))
    finally:
        pool.shutdown(cancel_futures=True)
    if failures:
        images = images[np.isin(np.arange(len(files)), list(failures), invert=True)]
    if channels is None and not color and first.shape[2] == 1:
        images = np.ascontiguousarray(images[..., :1])
    return DecodedImages(images, sorted(failures.items()))


def _tree_folder(root: Path) -> str:
    """The cache subfolder of the data folder ``root``: its name (made safe) and a hash of its resolved
    absolute path, so that two folders never share a cache and one folder always finds its own."""
    resolved = os.fsencode(root.resolve())
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", root.resolve().name)[:40] or "root"
    return f"{DECODED_FOLDER}/{readable}-{hashlib.sha256(resolved).hexdigest()[:16]}"


def _cache_key(files: list[Path], root: Path, channels: int | None, size: tuple[int, int] | None) -> str:
    """Hash of the decoding settings, the resolved ``root`` and the relative path, size and mtime of every
    file, in order."""
    digest = hashlib.sha256(f"imc_cluster cache {_CACHE_VERSION} channels={channels} size={size}".encode())
    digest.update(os.fsencode(root.resolve()))
    # file names that are not UTF-8 (Linux bytes) reach Python as surrogates: hashed as their bytes
    for file in files:
        stat = file.stat()
        entry = f"\0{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _read_cache(file: Path, n_files: int) -> DecodedImages | None:
    """The cached images and failures in ``file``, or None when there is no usable cache."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            images, indices, errors = archive["images"], archive["failed_index"], archive["failed_error"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    usable = images.dtype == np.uint8 and images.ndim == 4 and len(images) + len(indices) == n_files
    return DecodedImages(images, [(int(i), str(e)) for i, e in zip(indices, errors)]) if usable else None


def _write_cache(cache: Path, folder: str, name: str, decoded: DecodedImages) -> None:
    """Write ``decoded`` to ``cache/folder/name`` atomically (a temporary file, then a rename) and remove
    the older caches of the same split there; do nothing when the cache cannot be written."""
    indices = np.array([index for index, _ in decoded.failures], dtype=np.int64)
    errors = np.array([error for _, error in decoded.failures], dtype=str)
    try:
        file = cache_folder(folder, cache) / name
        with atomic_write(file) as handle:
            np.savez(handle, images=decoded.images, failed_index=indices, failed_error=errors)
    except OSError:
        return
    split = name.split("-")[0]
    for stale in file.parent.glob(f"{split}-*.npz"):
        if stale != file:
            stale.unlink(missing_ok=True)


def cached_decode(
    files: list[Path],
    root: Path,
    split: str,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    on_error: str = "raise",
    *,
    cache_dir: str | os.PathLike | None = None,
) -> DecodedImages:
    """The decoded ``files`` (under ``root``; see :func:`decode_images`), from the cache when it holds
    exactly these files and settings; otherwise decoded and cached.

    The cache is ``decoded/<root's name>-<hash>/<split>-<key>.npz`` in the user cache folder
    (:func:`~imc_cluster.core.cache.cache_root` of ``cache_dir``), never in ``root``; only the latest
    settings of each split of a folder are kept. Where the cache cannot be written the files are decoded
    on every call. A cache that recorded undecodable files raises the first one's error with
    ``on_error="raise"``. A bad ``cache_dir`` (an empty string, a file, not a path) raises.
    """
    cache, folder = cache_root(cache_dir), _tree_folder(root)
    name = f"{split}-{_cache_key(files, root, channels, size)}.npz"
    decoded = _read_cache(cache / folder / name, len(files))
    if decoded is None:
        decoded = decode_images(files, channels, size, on_error)
        _write_cache(cache, folder, name, decoded)
    elif decoded.failures and on_error == "raise":
        raise ValueError(decoded.failures[0][1])
    return decoded
