"""Images from PIL and from torch Datasets: the pixel values PIL's modes hold, read as comparable arrays,
and a Dataset of PIL images or tensors decoded once into one array."""

from __future__ import annotations

import numpy as np
import torch

from imc_cluster.data.arrays import VALID_CHANNELS, channels_first, pixel_range, to_uint8

__all__ = ["pil_to_array", "images_from_dataset"]


#: PIL modes read as one grey channel (black-and-white, grey, grey with alpha); every other mode as RGB
_GREY_MODES = ("1", "L", "LA")


#: PIL modes of grey images wider than 8 bits (16-bit, 32-bit integer, float), which a conversion to 8 bits
#: by PIL would clip at 255
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def pil_to_array(image, rgb: bool = False) -> np.ndarray:
    """A PIL image as a uint8 ``(H, W, 1)`` grey array (modes "1", "L" and "LA", unless ``rgb``) or an
    ``(H, W, 3)`` RGB array (every other mode; alpha is dropped). Image files and the PIL images of a
    torch Dataset are read by this one rule.

    Grey images wider than 8 bits (modes "I;16*", "I", "F") are scaled by :func:`_wide_range`, never
    clipped at 255; their non-finite values become the ends of that range.
    """
    if image.mode in _WIDE_MODES:
        values = np.asarray(image)
        low, high = _wide_range(values)
        values = np.nan_to_num(values.astype(np.float64), nan=low, posinf=high, neginf=low)
        grey = np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)[..., None]
        return np.repeat(grey, 3, axis=2) if rgb else grey
    grey = not rgb and image.mode in _GREY_MODES
    mode = "L" if grey else "RGB"
    array = np.asarray(image if image.mode == mode else image.convert(mode))
    return array[..., None] if grey else array


def _wide_range(array: np.ndarray) -> tuple[float, float]:
    """The value range of a grey image wider than 8 bits that maps onto 0..255: 0..65535 for integers
    within it (16-bit images, and PIL's 32-bit mode "I" holding them), [0, 1] for floats within it, else
    the image's own finite minimum and maximum (one more than the minimum for a constant image)."""
    finite = array[np.isfinite(array)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    nominal = (0.0, 65535.0) if array.dtype.kind in "iu" else (0.0, 1.0)
    if nominal[0] <= low and high <= nominal[1]:
        return nominal
    return low, high if high > low else low + 1.0


def _pil_or_tensor_to_array(item) -> np.ndarray:
    """One Dataset image (PIL image, tensor or array) as an (H, W, C) or (C, H, W) array."""
    if isinstance(item, torch.Tensor):
        return item.detach().cpu().numpy()
    if hasattr(item, "mode") and hasattr(item, "size"):  # a PIL image
        return pil_to_array(item)
    if isinstance(item, np.ndarray):
        return item
    raise TypeError(f"Dataset items must be PIL images, tensors or arrays, got {type(item).__name__}.")


def images_from_dataset(dataset) -> np.ndarray:
    """Decode a torch Dataset (map-style or iterable) of images or (image, target) pairs, once; targets are
    ignored.

    Grey and RGB images may be mixed, as in image folders: the grey ones are then repeated over three
    channels. Items of different dtypes are each brought to uint8 by their own range (:func:`pixel_range`).

    Returns
    -------
    images : ndarray (N, C, H, W)
        In the items' own dtype when they share one (uint8 for PIL images).
    """
    items = (
        iter(dataset)
        if isinstance(dataset, torch.utils.data.IterableDataset)
        else (dataset[index] for index in range(len(dataset)))
    )
    images = []
    for index, item in enumerate(items):
        if isinstance(item, (tuple, list)):
            item = item[0]
        array = _pil_or_tensor_to_array(item)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"Dataset item {index} is not an image: shape {array.shape}.")
        images.append(array)
    if not images:
        raise ValueError("The dataset is empty.")
    if len({a.dtype for a in images}) > 1:
        images = [to_uint8(a, pixel_range(a)) for a in images]
    images = _grey_to_rgb_where_mixed(images)
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Dataset images differ in shape ({sorted(shapes)[:3]}...); resize them to one size."
        )
    return channels_first(np.stack(images))


def _grey_to_rgb_where_mixed(images: list[np.ndarray]) -> list[np.ndarray]:
    """Repeat grey images over three channels when the others are RGB: the shapes differ only in a first
    or last axis of 1 and 3 (channels-first or channels-last); any other mix is left to the caller."""
    shapes = {a.shape for a in images}
    if len(shapes) != 2:
        return images
    first, second = shapes
    axes = [axis for axis in range(3) if first[axis] != second[axis]]
    if len(axes) != 1 or axes[0] == 1 or {first[axes[0]], second[axes[0]]} != set(VALID_CHANNELS):
        return images
    axis = axes[0]
    return [np.repeat(a, 3, axis=axis) if a.shape[axis] == 1 else a for a in images]
