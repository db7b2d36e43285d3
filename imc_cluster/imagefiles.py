"""Image files: decoding with PIL on a thread pool, with every failure naming its file, and a cache.

A folder of image files is decoded once into one uint8 array (:func:`decode_images`); the array is cached
in ``<root>/.imc_cluster_cache/<split>-<key>.npz``, keyed by the relative path, size and modification time
of every file, so that a changed folder is decoded again (:func:`cached_decode`). Each file is decoded by
:func:`~imc_cluster.data.pil_to_array`'s rule, in full (a truncated file fails), and within PIL's pixel
limit (a decompression bomb fails).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .data import pil_to_array

__all__ = ["CACHE_DIR", "decode_file", "decode_images", "cached_decode"]

#: folder, inside a data set's root, that holds the caches of decoded image trees
CACHE_DIR = ".imc_cluster_cache"
#: part of every cache key; bump it when the decoding changes
_CACHE_VERSION = 2
#: image files per thread-pool task
_DECODE_CHUNK = 256


def _check_pixel_limit(image: Image.Image) -> None:
    """Raise PIL's DecompressionBombError for an image over ``Image.MAX_IMAGE_PIXELS``, where PIL itself only
    warns (it raises at twice that size)."""
    limit, pixels = Image.MAX_IMAGE_PIXELS, image.width * image.height
    if limit is not None and pixels > limit:
        raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels.")


def decode_file(file: Path, rgb: bool) -> np.ndarray:
    """One image file as a uint8 ``(H, W, 1)`` grey or ``(H, W, 3)`` RGB array (always RGB if ``rgb``).

    The image is loaded in full, so that a truncated file fails here and is not padded. Any failure, and an
    image over PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``), raises one ValueError that names the file.
    """
    try:
        with Image.open(file) as image:
            _check_pixel_limit(image)
            image.load()
            return pil_to_array(image, rgb)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"The image file {file} exceeds PIL's pixel limit, Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS} (a possible decompression bomb): {error}"
        ) from error
    except Exception as error:  # PIL's decoders fail on damaged files with many kinds of error
        raise ValueError(f"Cannot decode the image file {file}: {error}") from error


def decode_images(files: list[Path], rgb: bool) -> np.ndarray:
    """Decode image files of one size on a thread pool into one ``(N, H, W, C)`` uint8 array: one grey
    channel when every file is grey (and not ``rgb``), else RGB with grey images repeated over the
    channels."""
    first = decode_file(files[0], rgb)
    images = np.empty((len(files), *first.shape[:2], 3), dtype=np.uint8)

    def decode_chunk(start: int) -> bool:
        colour = False
        for index in range(start, min(start + _DECODE_CHUNK, len(files))):
            array = decode_file(files[index], rgb)
            if array.shape[:2] != first.shape[:2]:
                raise ValueError(
                    f"Images differ in size: {files[0]} is {first.shape[0]}x{first.shape[1]} but "
                    f"{files[index]} is {array.shape[0]}x{array.shape[1]} (height x width); resize them to "
                    "one size."
                )
            images[index] = array
            colour = colour or array.shape[2] == 3
        return colour

    pool = ThreadPoolExecutor()
    try:
        colour = any(list(pool.map(decode_chunk, range(0, len(files), _DECODE_CHUNK))))
    finally:
        pool.shutdown(cancel_futures=True)
    return images if colour else np.ascontiguousarray(images[..., :1])


def _cache_key(files: list[Path], root: Path, rgb: bool) -> str:
    """Hash of the decoding settings and the relative path, size and mtime of every file, in order."""
    digest = hashlib.sha256(f"imc_cluster cache {_CACHE_VERSION} rgb={rgb}".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"\0{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _read_cache(file: Path, n_images: int) -> np.ndarray | None:
    """The cached images in ``file``, or None when there is no usable cache."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            images = archive["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    usable = images.dtype == np.uint8 and images.ndim == 4 and len(images) == n_images
    return images if usable else None


def _write_cache(file: Path, images: np.ndarray) -> None:
    """Write ``images`` to ``file`` atomically (a temporary file, then a rename) and remove the older
    caches of the same split; do nothing when the folder is not writable."""
    try:
        file.parent.mkdir(exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=file.parent, prefix=file.stem, suffix=".tmp", delete=False)
    except OSError:
        return
    try:
        with handle:
            np.savez(handle, images=images)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, file)
    except OSError:
        Path(handle.name).unlink(missing_ok=True)
        return
    split = file.name.split("-")[0]
    for stale in file.parent.glob(f"{split}-*.npz"):
        if stale != file:
            stale.unlink(missing_ok=True)


def cached_decode(files: list[Path], root: Path, split: str, rgb: bool) -> np.ndarray:
    """The decoded ``files`` (under ``root``), from ``root/CACHE_DIR/<split>-<key>.npz`` when that cache
    of exactly these files exists; otherwise decoded and cached there."""
    cache = root / CACHE_DIR / f"{split}-{_cache_key(files, root, rgb)}.npz"
    images = _read_cache(cache, len(files))
    if images is None:
        images = decode_images(files, rgb)
        _write_cache(cache, images)
    return images
