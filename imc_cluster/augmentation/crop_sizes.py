"""Crop sizes of the multi-crop views: the defaults for any image size, and the check of sizes asked for
(docs/method.md#views)."""

from __future__ import annotations

from numbers import Integral

from imc_cluster.core.numbers import is_integer

__all__ = [
    "PUBLISHED_CROP_SIZES",
    "LARGE_CROP_FRACTION",
    "SMALL_CROP_FRACTION",
    "CropSize",
    "as_crop_size",
    "SWAV_SMALL_FRACTION",
    "default_crop_sizes",
    "network_crop_sizes",
    "resolve_crop_sizes",
]

#: default crop sides as fractions of the image side (28/32 and 18/32 on CIFAR, 56/64 and 36/64 on
#: Tiny-ImageNet)
LARGE_CROP_FRACTION = 0.875
SMALL_CROP_FRACTION = 0.5625
#: the published (large, small) crop sides for square images of these sides (digits, CIFAR,
#: Tiny-ImageNet, STL-10)
PUBLISHED_CROP_SIZES = {8: (8, 6), 32: (28, 18), 64: (56, 36), 96: (76, 52)}
#: the side of SwAV's small crops as a fraction of its large ones on ImageNet (96 of 224): the small crops of
#: a pretrained network
SWAV_SMALL_FRACTION = 96 / 224
#: the crop-size parameters
_NAMES = ("large_crop_size", "small_crop_size")
#: a crop size: one side (square crops) or (height, width)
CropSize = int | tuple[int, int]


def _fraction_of(fraction: float, height: int, width: int) -> tuple[int, int]:
    """``fraction`` of each axis of ``height x width`` images, rounded, at least 1."""
    return max(1, round(fraction * height)), max(1, round(fraction * width))


def as_crop_size(name: str, value) -> tuple[int, int] | None:
    """A crop-size parameter (None, a positive int or an (h, w) pair of them) as a pair, or None."""
    if value is None:
        return None
    size = (value, value) if isinstance(value, Integral) else tuple(value)
    if len(size) != 2 or not all(is_integer(s) and s >= 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    return int(size[0]), int(size[1])


def resolve_crop_sizes(large, small, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (large, small) crop sizes for ``height x width`` images: those given (None: the default fractions
    of each axis), checked against the images."""
    sizes = []
    for name, value, fraction in (
        ("large_crop_size", large, LARGE_CROP_FRACTION),
        ("small_crop_size", small, SMALL_CROP_FRACTION),
    ):
        size = as_crop_size(name, value) or _fraction_of(fraction, height, width)
        if size[0] > height or size[1] > width:
            raise ValueError(f"{name}={value!r} is larger than the {height}x{width} images.")
        sizes.append(size)
    return sizes[0], sizes[1]


def network_crop_sizes(large, small, size: int, fixed_size: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (large, small) crop sizes of a pretrained network of input side ``size``: those given, by default
    the input side and SwAV's ImageNet proportion of it (96 of 224) for the small crops; a network that takes
    its own size only (``fixed_size``) gets every crop at that size."""
    default = (size, size if fixed_size else max(1, round(size * SWAV_SMALL_FRACTION)))
    sizes = [
        as_crop_size(name, value) or (side, side)
        for name, value, side in zip(_NAMES, (large, small), default)
    ]
    if fixed_size and any(s != (size, size) for s in sizes):
        raise ValueError(
            f"The network takes {size}x{size} inputs only, but the crop sizes are {sizes[0]} and {sizes[1]}; "
            "leave large_crop_size and small_crop_size at None."
        )
    return sizes[0], sizes[1]


def default_crop_sizes(height: int, width: int) -> tuple[CropSize, CropSize]:
    """Default (large, small) crop sizes for ``height x width`` images of a named data set.

    Square images of 8, 32, 64 and 96 pixels (digits, CIFAR, Tiny-ImageNet, STL-10) get the published
    sides; other square images the default fractions of their side; other images ``(h, w)`` pairs of those
    fractions of each axis.
    """
    if height == width and height in PUBLISHED_CROP_SIZES:
        return PUBLISHED_CROP_SIZES[height]
    sizes = [_fraction_of(fraction, height, width) for fraction in (LARGE_CROP_FRACTION, SMALL_CROP_FRACTION)]
    return tuple(size[0] if height == width else size for size in sizes)
