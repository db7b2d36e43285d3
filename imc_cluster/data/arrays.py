"""Input handling: every accepted form of ``X`` becomes one compact tensor.

Images become ``uint8`` tensors ``(N, C, H, W)``: uint8 arrays as they are, float arrays quantised to 256
levels over their pixel range, torch Datasets decoded once. Plain feature vectors become float32 tensors
``(N, F)``. Nothing here makes a float copy of an image set; the training loop converts one batch at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import check_array

from imc_cluster.core.callers import user_stacklevel
from imc_cluster.data.placement import batches

__all__ = [
    "AmbiguousImagesWarning",
    "PreparedData",
    "is_dataset",
    "ndim",
    "as_array_like",
    "resolve_image_shape",
    "images_from_array",
    "pixel_range",
    "to_uint8",
    "as_tensor",
    "channel_statistics",
    "true_labels",
    "VALID_CHANNELS",
    "channels_first",
]

VALID_CHANNELS = (1, 3)


@dataclass
class PreparedData:
    """Data ready for the networks.

    Attributes
    ----------
    values : Tensor
        ``uint8 (N, C, H, W)`` images (possibly a channels-last view of the caller's array) or
        ``float32 (N, F)`` vectors, on the CPU. Never written to.
    is_image : bool
        Whether ``values`` holds images.
    """

    values: torch.Tensor
    is_image: bool

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(C, H, W)`` or ``(F,)``."""
        return tuple(self.values.shape[1:])


def is_dataset(X) -> bool:
    """Whether ``X`` is a torch Dataset, map-style or iterable."""
    return isinstance(X, torch.utils.data.Dataset)


def ndim(X) -> int:
    """Dimensions of array-like ``X`` without converting arrays; 2 when numpy cannot tell (ragged lists),
    leaving the error to input validation."""
    if hasattr(X, "ndim"):
        return int(X.ndim)
    try:
        return np.asarray(X).ndim
    except ValueError:
        return 2


def as_array_like(X):
    """``X`` with torch containers opened: a tensor as a numpy array (detached from autograd, on the CPU), a
    DataLoader as the array of its batches' inputs (targets dropped); anything else as it is."""
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(
            "X is a masked array: its mask would be ignored; pass the valid samples as a plain array."
        )
    if isinstance(X, torch.Tensor):
        if X.device.type == "meta":
            raise TypeError("X is a tensor on the 'meta' device, which holds no values.")
        X = X.detach().cpu()
        return (X.float() if X.dtype in (torch.bfloat16, torch.float16) else X).numpy()
    if isinstance(X, torch.utils.data.DataLoader):
        batches = [batch[0] if isinstance(batch, (tuple, list)) else batch for batch in X]
        if not batches:
            raise ValueError("The DataLoader yields no batch.")
        if not all(isinstance(batch, torch.Tensor) for batch in batches):
            raise TypeError(
                "DataLoader batches must be tensors or (tensor, target) pairs, got "
                f"{type(batches[0]).__name__}."
            )
        return torch.cat([batch.detach().cpu() for batch in batches]).numpy()
    if isinstance(X, (list, tuple)):
        _check_same_shapes(X)
    return X


def _check_same_shapes(samples) -> None:
    """A list of samples (images or vectors) must be of one shape: a clear error for a ragged list."""
    shapes = []
    for sample in samples:
        try:
            shape = np.shape(sample)
        except ValueError:  # a ragged sample itself
            shape = None
        if shape not in shapes:
            shapes.append(shape)
    if len(shapes) > 1:
        shown = ", ".join("ragged" if shape is None else str(shape) for shape in shapes[:3])
        raise ValueError(
            f"X is a list of {len(samples)} samples of {len(shapes)} different shapes ({shown}"
            f"{', ...' if len(shapes) > 3 else ''}): every sample must have the same shape. Bring images to "
            "one size first (load_image_folder(path, image_size=S) does it for image files)."
        )


def resolve_image_shape(image_shape, n_features: int) -> tuple[int, int, int]:
    """Turn the ``image_shape`` parameter into ``(H, W, C)`` for rows of ``n_features`` values.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W)`` for grey images or ``(H, W, C)``; one entry may be -1 and is then inferred, as in
        :func:`numpy.reshape`. Rows are the C-order flattening of ``(H, W, C)`` images.
    n_features : int
        Number of values per row.

    Returns
    -------
    shape : tuple of int
        ``(H, W, C)``.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels), got {image_shape}."
        )
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"image_shape entries must be positive, with at most one -1, got {image_shape}.")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if n_features % known:
            raise ValueError(f"image_shape {image_shape} does not divide the {n_features} features of X.")
        shape = tuple(n_features // known if s == -1 else s for s in shape)
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape {image_shape} holds {int(np.prod(shape))} values, but X has {n_features} features."
        )
    if shape[2] not in VALID_CHANNELS:
        raise ValueError(f"Images must have 1 or 3 channels, image_shape {image_shape} gives {shape[2]}.")
    return shape


class AmbiguousImagesWarning(UserWarning):
    """Images whose channel axis could be the second or the last one (both have 1 or 3 entries)."""


def channels_first(array: np.ndarray, expected: tuple[int, ...] | None = None) -> np.ndarray:
    """(N, H, W, C) or (N, C, H, W) -> (N, C, H, W); channels-last when the last axis has 1 or 3 entries
    and the second does not. Where both have (``(N, 1, H, 3)``, say), the reading whose ``(C, H, W)`` is
    ``expected`` (the fitted images, or ``image_shape``), else channels-first with a warning."""
    last, second = array.shape[-1] in VALID_CHANNELS, array.shape[1] in VALID_CHANNELS
    if last and not second:
        return array.transpose(0, 3, 1, 2)
    if not second:
        raise ValueError(
            f"Cannot find the channel axis of images shaped {array.shape[1:]}: images must have 1 or 3 "
            "channels, as (N, H, W, C) or (N, C, H, W)."
        )
    if not last:
        return array
    as_last = array.transpose(0, 3, 1, 2)
    matching = [r for r in (array, as_last) if expected is not None and _fits(r.shape[1:], expected)]
    if len(matching) == 1:
        return matching[0]
    if expected is None:
        n, c, h, w = array.shape
        warnings.warn(
            f"X of shape {array.shape} reads as {n} images of {c} channel(s) of {h}x{w} pixels "
            f"(channels-first, as read) or of {w} channel(s) of {c}x{h} pixels (channels-last). Pass "
            f"image_shape=({h}, {w}, {c}) to confirm this reading, or image_shape=({c}, {h}, {w}) for the "
            "other.",
            AmbiguousImagesWarning,
            stacklevel=user_stacklevel(),
        )
    return array


def _fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether images of ``(C, H, W)`` ``shape`` are of ``expected`` ``(C, H, W)``, or ``(H, W)`` (any C)."""
    return tuple(shape) == tuple(expected) or (len(expected) == 2 and tuple(shape[1:]) == tuple(expected))


#: value ranges that the dtype itself states
_DTYPE_RANGES = {
    np.dtype(np.uint8): (0.0, 255.0),
    np.dtype(np.uint16): (0.0, 65535.0),
    np.dtype(bool): (0.0, 1.0),
}
#: ranges of a known meaning: the dtype ranges, and [0, 1] floats
NOMINAL_RANGES = (*_DTYPE_RANGES.values(), (0.0, 1.0))


def pixel_range(array: np.ndarray, fitted: tuple[float, float] | None = None) -> tuple[float, float]:
    """The value range of image ``array`` that maps onto [0, 255].

    The form of the values decides where it can: uint8 [0, 255], uint16 [0, 65535], bool [0, 1], and floats
    within [0, 1] are [0, 1] (``ToTensor``), so that the same pixels in any of these forms give the same
    uint8 images. Other values (floats beyond [0, 1], other integer types) take ``fitted``, the range of
    the training images, when given; at fit, integers take 8 or 16 bits, whichever holds them, and floats
    their own minimum and maximum. Training floats with a range of their own keep it for every later float.
    """
    dtype = np.dtype(array.dtype.newbyteorder("="))
    if dtype in _DTYPE_RANGES:
        return _DTYPE_RANGES[dtype]
    if fitted is not None and tuple(fitted) not in NOMINAL_RANGES:
        return tuple(fitted)
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if fitted is not None:
        if array.dtype.kind == "f" and tuple(fitted) in _DTYPE_RANGES.values() and high < 0.05 * fitted[1]:
            raise ValueError(
                f"X holds floats in [{low:g}, {high:g}]: neither in [0, 1] (read as such) nor on the "
                f"[0, {fitted[1]:g}] scale of the estimator's training images, on which they would be nearly "
                "black. Pass floats in [0, 1], or values on that scale."
            )
        return tuple(fitted)
    if array.dtype.kind in "iu" and low >= 0 and high <= 65535:
        return (0.0, 255.0) if high <= 255 else (0.0, 65535.0)
    return low, high if high > low else low + 1.0


def to_uint8(array: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Quantise images to uint8 over ``value_range``.

    Values outside a range of known meaning (:data:`NOMINAL_RANGES`) are an error, since they say the
    images are on another scale; beyond a range learned from training data they are clipped.
    """
    if array.dtype == np.uint8 and value_range == (0.0, 255.0):
        return array
    low, high = value_range
    if tuple(value_range) in NOMINAL_RANGES and array.size and (array.min() < low or array.max() > high):
        raise ValueError(
            f"The images hold values in [{float(array.min()):g}, {float(array.max()):g}], outside "
            f"the range [{low:g}, {high:g}] of the estimator's training images; pass them on that "
            "scale."
        )
    scaled = (np.asarray(array, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """A tensor over the memory of ``images``, without a copy where the strides allow it.

    Channels-last ``(N, H, W, C)`` input, seen as ``(N, C, H, W)`` through a transposed view, stays a
    channels-last view: preparing a data set never doubles its memory. Only negative or unaligned strides
    are copied. The tensor is only ever read, so read-only arrays (memory maps) are shared too.
    """
    if any(stride < 0 or stride % images.itemsize for stride in images.strides):
        images = np.ascontiguousarray(images)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(images)


def images_from_array(array: np.ndarray, image_shape, expected: tuple[int, ...] | None = None) -> np.ndarray:
    """Images (N, C, H, W) from a validated 2-D, 3-D or 4-D array, still in the input's dtype. The channel
    axis of a 4-D array whose second and last axes could both be channels is the one that gives images of
    ``expected`` ``(C, H, W)`` (the fitted images), or of ``image_shape``."""
    if array.ndim == 2:
        height, width, channels = resolve_image_shape(image_shape, array.shape[1])
        return array.reshape(-1, height, width, channels).transpose(0, 3, 1, 2)
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        if expected is None and image_shape is not None and -1 not in image_shape:
            shape = tuple(image_shape)
            expected = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
        return channels_first(array, expected)
    raise ValueError(f"Expected 2-D, 3-D or 4-D image data, got an array with {array.ndim} dimensions.")


def check_images(images: np.ndarray) -> np.ndarray:
    """Reject images with non-finite values (as check_array does for 2-D data)."""
    return check_array(images, allow_nd=True, ensure_all_finite=True, dtype=None, ensure_min_features=1)


#: pixels per chunk of the channel statistics' histograms
_STATISTICS_CHUNK_PIXELS = 1 << 22


def channel_statistics(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images in [0, 1] units.

    Computed from exact per-channel histograms, counted a chunk of images at a time, so no float copy of
    the images is ever made (any memory layout works, channels-last views included). The std is at
    least 1e-3, so that normalising a constant channel stays finite.
    """
    n_images, channels, height, width = images.shape
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    step = max(1, _STATISTICS_CHUNK_PIXELS // (height * width))
    for part in batches(n_images, step):
        chunk = images[part]
        for channel in range(channels):
            counts[channel] += torch.bincount(chunk[:, channel].flatten(), minlength=256)
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    totals = counts.sum(dim=1)
    mean = counts @ levels / totals
    std = (counts @ levels.square() / totals - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def true_labels(y, n_samples: int, what: str) -> np.ndarray:
    """True labels for scoring: 1-D, one per sample, none missing."""
    y = np.asarray(as_array_like(y))
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"{what} must be 1-D with one label per sample: got {y.shape} labels for {n_samples} samples."
        )
    if (y.dtype.kind == "f" and np.isnan(y).any()) or (y.dtype == object and any(v is None for v in y)):
        raise ValueError(f"{what} hold missing (NaN or None) labels; leave those samples out.")
    return y
