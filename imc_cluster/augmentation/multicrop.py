"""Multi-crop image augmentation for IMC-SwAV, batched on the images' device.

Every training step turns a batch of uint8 images into groups of views (SwAV's multi-crop, for
instance two large and four small crops of every image). :class:`MultiCropAugmenter` makes the views
of the whole batch at once with tensor operations: every image and every crop draws its own random
parameters from one :class:`torch.Generator` on the images' device, nothing loops over images in
Python, and no value is ever read back to the host, so augmentation never waits for the device.

One group of views is made in five stages:

1. *Crop boxes* (:func:`~imc_cluster.augmentation.crop_boxes.sample_crop_boxes`) follow torchvision's
   ``RandomResizedCrop.get_params``, with the central crop as the fallback when no attempt fits.
2. *Crop and resize* is one :func:`torchvision.ops.roi_align` over the float batch: its adaptive
   sampling grid averages over the source area of every output pixel, so down-scaling is anti-aliased.
3. *Horizontal flip* picks, per view, the view or its mirror with :func:`torch.where`.
4. *Colour jitter* (:func:`~imc_cluster.augmentation.color.color_jitter`) adjusts brightness, contrast,
   saturation and hue with factors per view (views that are not jittered get neutral factors), in an order
   that is a random permutation per view, as torchvision's per-image ``ColorJitter`` draws it; every step
   stays on the device, and a neutral blend is an exact identity.
5. *Grayscale* replaces, per view, the colours by their ITU-R 601-2 luma, kept as three channels.

Normalisation by the per-channel mean and std comes last. The uint8 batch is converted to float once
per call; after the crop every stage works in place on the views, and the few temporaries are
single-channel, which keeps memory traffic (and, on the CPU, page faults) low.

:func:`normalize` is the matching evaluation transform, without augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

from imc_cluster.augmentation.color import (
    NEUTRAL_JITTER,
    color_jitter,
    luma,
    sample_jitter_factors,
    sample_jitter_orders,
)
from imc_cluster.augmentation.crop_boxes import sample_crop_boxes
from imc_cluster.core.numbers import check_real, is_integer, is_real

__all__ = [
    "CropGroup",
    "MultiCropAugmenter",
    "normalize",
    "check_color_jitter",
    "check_normalization",
    "check_scale",
]


@dataclass(frozen=True)
class CropGroup:
    """One group of multi-crop views: ``n_crops`` crops of one output size and one area-scale range.

    Parameters
    ----------
    n_crops : int
        Number of crops of every image in the group, at least 1.
    size : (int, int)
        Output ``(height, width)`` of the crops, both at least 1.
    scale : (float, float)
        Range of the crop area as a fraction of the image area, with ``0 < scale[0] <= scale[1] <= 1``.

    Raises
    ------
    ValueError
        When an argument is out of its range.
    """

    n_crops: int
    size: tuple[int, int]
    scale: tuple[float, float]

    def __post_init__(self) -> None:
        if not is_integer(self.n_crops) or self.n_crops < 1:
            raise ValueError(f"CropGroup.n_crops must be an int >= 1, got {self.n_crops!r}.")
        if not _is_pair(self.size, is_integer) or min(self.size) < 1:
            raise ValueError(
                f"CropGroup.size must be a (height, width) pair of ints >= 1, got {self.size!r}."
            )
        check_scale("CropGroup.scale", self.scale)


class MultiCropAugmenter:
    """Random multi-crop views of a batch of images, as in SwAV.

    Every view is a random resized crop, randomly flipped, colour-jittered and turned to grayscale,
    then normalised. All random parameters are drawn per image and per crop from the generator passed
    to :meth:`__call__`, so the views are a deterministic function of the images and its state.

    Parameters
    ----------
    groups : sequence of CropGroup
        The view groups, in the order in which :meth:`__call__` returns them.
    mean, std : sequence of float
        Per-channel mean and standard deviation (of images scaled to [0, 1]) used to normalise the
        views; one value per image channel (1 or 3), every std positive.
    flip_prob : float
        Probability of a horizontal flip.
    color_jitter : (float, float, float, float)
        Strength of the brightness, contrast, saturation and hue jitter: the first three factors are
        uniform in ``[max(0, 1 - j), 1 + j]``, the hue shift is uniform in ``[-h, h]`` with ``h <= 0.5``.
    color_jitter_prob : float
        Probability that a view is colour-jittered.
    grayscale_prob : float
        Probability that a view is turned to grayscale.
    ratio : (float, float), default=(3/4, 4/3)
        Range of the crop aspect ratio (width / height), sampled log-uniformly.

    Raises
    ------
    ValueError
        When an argument is out of its range.
    TypeError
        When ``groups`` holds something other than :class:`CropGroup`.
    """

    def __init__(
        self,
        groups: Sequence[CropGroup],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        flip_prob: float,
        color_jitter: tuple[float, float, float, float],
        color_jitter_prob: float,
        grayscale_prob: float,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.groups = _check_groups(groups)
        self.mean, self.std = _check_mean_std(mean, std)
        self.flip_prob = check_real("flip_prob", flip_prob, 0.0, 1.0)
        self.color_jitter_prob = check_real("color_jitter_prob", color_jitter_prob, 0.0, 1.0)
        self.grayscale_prob = check_real("grayscale_prob", grayscale_prob, 0.0, 1.0)
        self.color_jitter = check_color_jitter(color_jitter)
        self.ratio = _check_ratio(ratio)
        self._device_statistics: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """Augmented, normalised views of every image, one tensor per crop group.

        Parameters
        ----------
        images : torch.Tensor
            uint8 images of shape ``(B, C, H, W)`` with ``C == len(mean)``, on any device.
        generator : torch.Generator
            Source of all randomness, on the images' device.

        Returns
        -------
        list of torch.Tensor
            For every group, float32 views of shape ``(n_crops * B, C, h, w)``, crop-major: rows
            ``[k * B:(k + 1) * B]`` are crop ``k`` of every image.

        Raises
        ------
        TypeError
            When ``images`` is not a uint8 tensor.
        ValueError
            When ``images`` has the wrong shape, or the generator is on another device.
        """
        _check_images(images, len(self.mean))
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        if not _same_device(generator.device, images.device):
            raise ValueError(f"The generator is on {generator.device} but the images are on {images.device}.")
        with torch.no_grad():
            source = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
            return [self._views(source, group, generator) for group in self.groups]

    def _views(self, source: torch.Tensor, group: CropGroup, generator: torch.Generator) -> torch.Tensor:
        """The normalised views of one crop group."""
        batch, channels, height, width = source.shape
        n_views = group.n_crops * batch
        boxes = sample_crop_boxes(n_views, height, width, group.scale, self.ratio, generator)
        views = _crop(source, boxes, group.size)
        _flip_(views, _coin(n_views, self.flip_prob, generator))
        if self.color_jitter_prob > 0 and any(self.color_jitter):
            self._jitter_(views, generator)
        if channels == 3 and self.grayscale_prob > 0:
            gray = _coin(n_views, self.grayscale_prob, generator).view(-1, 1, 1, 1)
            torch.where(gray, luma(views), views, out=views)
        center, spread = self._statistics(views.device)
        return views.sub_(center).div_(spread)

    def _statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel mean and std as ``(1, C, 1, 1)`` tensors on ``device``, copied there once: two
        broadcast operations normalise a batch, with no host-to-device copy per step."""
        if device not in self._device_statistics:
            shape = (1, len(self.mean), 1, 1)
            statistics = (
                torch.tensor(values, dtype=torch.float32).view(shape).to(device)
                for values in (self.mean, self.std)
            )
            self._device_statistics[device] = tuple(statistics)
        return self._device_statistics[device]

    def _jitter_(self, views: torch.Tensor, generator: torch.Generator) -> None:
        """Colour-jitter, in place, every view with probability ``color_jitter_prob``; the others are kept."""
        n_views = views.shape[0]
        factors = sample_jitter_factors(n_views, self.color_jitter, generator)
        applied = _coin(n_views, self.color_jitter_prob, generator)
        for op, neutral in enumerate(NEUTRAL_JITTER):
            factors[op] = torch.where(applied, factors[op], neutral)
        color_jitter(views, factors, sample_jitter_orders(n_views, generator), inplace=True)


def normalize(
    images: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """The evaluation transform: uint8 images to float32 in [0, 1], then ``(x - mean) / std`` per channel.

    Parameters
    ----------
    images : torch.Tensor
        uint8 images of shape ``(B, C, H, W)`` with C in {1, 3}.
    mean, std : torch.Tensor or sequence of float
        Per-channel mean and standard deviation, ``C`` values each.

    Returns
    -------
    torch.Tensor
        float32 tensor of the shape of ``images``, on its device.

    Raises
    ------
    TypeError
        When ``images`` is not a uint8 tensor.
    ValueError
        When ``images`` has the wrong shape or ``mean``/``std`` the wrong length.
    """
    _check_images(images, len(mean))
    if len(std) != len(mean):
        raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}.")
    if isinstance(mean, torch.Tensor) or isinstance(std, torch.Tensor):
        shape = (1, -1, 1, 1)
        mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
        std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)
        return images.to(torch.float32).div_(255.0).sub_(mean).div_(std)
    return _normalize_(images.to(torch.float32).div_(255.0), mean, std)


def _crop(source: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop box ``k`` of image ``k mod B`` and resize it to ``size`` by area-averaging bilinear samples."""
    batch = source.shape[0]
    image_index = torch.arange(boxes.shape[0], device=boxes.device).remainder_(batch).to(boxes.dtype)
    rois = torch.cat((image_index.view(-1, 1), boxes), dim=1)
    return roi_align(
        source, rois, output_size=tuple(size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def _flip_(views: torch.Tensor, mask: torch.Tensor) -> None:
    """Mirror, in place, the views where ``mask`` is set."""
    torch.where(mask.view(-1, 1, 1, 1), views.flip(-1), views, out=views)


def _coin(n: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` independent booleans, each true with ``probability``."""
    return torch.rand(n, generator=generator, device=generator.device) < probability


def _normalize_(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalise float images in place, channel by channel, with host-side constants."""
    for channel, (center, spread) in enumerate(zip(mean, std)):
        images[:, channel].sub_(center).div_(spread)
    return images


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are one device ("cuda" without an index is the current CUDA device)."""

    def index(device: torch.device) -> int | None:
        return torch.cuda.current_device() if device.type == "cuda" and device.index is None else device.index

    return a.type == b.type and index(a) == index(b)


def _is_pair(value, is_item) -> bool:
    """Whether ``value`` is a tuple or list of two items that pass ``is_item``."""
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(is_item(item) for item in value)


def _check_images(images: torch.Tensor, channels: int) -> None:
    """Raise unless ``images`` is a uint8 ``(B, C, H, W)`` tensor with ``channels`` channels."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}.")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {images.ndim} dimensions.")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}.")
    if images.shape[1] != channels:
        raise ValueError(f"images have {images.shape[1]} channels but mean/std have {channels} values.")
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"images must be at least 1x1 pixels, got {tuple(images.shape[2:])}.")


def _check_groups(groups: Sequence[CropGroup]) -> tuple[CropGroup, ...]:
    groups = tuple(groups)
    if not groups:
        raise ValueError("groups must hold at least one CropGroup.")
    for group in groups:
        if not isinstance(group, CropGroup):
            raise TypeError(f"groups must hold CropGroup instances, got {type(group).__name__}.")
    return groups


def _check_mean_std(
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = check_normalization((mean, std), "mean/std")
    if len(mean) not in (1, 3):
        raise ValueError(f"mean and std must have 1 or 3 values each, got {len(mean)}.")
    return tuple(mean), tuple(std)


def check_normalization(value, name: str = "normalization") -> tuple[list[float], list[float]]:
    """A normalisation ``(mean, std)``: equally long sequences of finite numbers, every std > 0."""
    try:
        mean, std = ([float(v) if is_real(v) else float("nan") for v in part] for part in value)
    except (TypeError, ValueError):
        mean = std = []
    if not mean or len(mean) != len(std) or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        raise ValueError(
            f"{name} must be a pair (mean, std) of equally long sequences of finite numbers "
            f"(one per image channel) with std > 0, got {value!r}."
        )
    return mean, std


def check_color_jitter(value, name: str = "color_jitter") -> tuple[float, float, float, float]:
    """Colour-jitter strengths: 4 non-negative finite numbers (brightness, contrast, saturation, hue), the
    hue at most 0.5."""
    try:
        jitter = tuple(check_real(name, j) for j in value)
    except (TypeError, ValueError):
        jitter = ()
    if len(jitter) != 4 or jitter[3] > 0.5:
        raise ValueError(
            f"{name} must be 4 non-negative finite numbers (brightness, contrast, saturation, "
            f"hue) with hue <= 0.5, got {value!r}."
        )
    return jitter


def check_scale(name: str, value) -> tuple[float, float]:
    """A crop-area range ``(low, high)`` with ``0 < low <= high <= 1``."""
    if not _is_pair(value, is_real) or not 0 < value[0] <= value[1] <= 1:
        raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high <= 1, got {value!r}.")
    return float(value[0]), float(value[1])


def _check_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    ratio = tuple(float(r) for r in ratio)
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1] < math.inf:
        raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1] < inf, got {ratio}.")
    return ratio
