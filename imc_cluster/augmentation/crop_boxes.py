"""Random resized-crop boxes of the multi-crop augmentation, drawn for a whole batch at once.

:func:`sample_crop_boxes` follows torchvision's ``RandomResizedCrop.get_params``: the ten attempts of
every box are drawn at once and the first that fits is kept, the central crop clamped to the ratio range
being the fallback when none does. Nothing is read back to the host.
"""

from __future__ import annotations

import math

import torch

__all__ = ["CROP_ATTEMPTS", "sample_crop_boxes"]

#: number of tries at a box that fits inside the image before the central crop is taken
CROP_ATTEMPTS = 10


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Random resized-crop boxes, drawn as torchvision's ``RandomResizedCrop.get_params`` draws them.

    Every box tries up to ten times an area fraction uniform in ``scale`` and an aspect ratio
    log-uniform in ``ratio``, rounds the side lengths to whole pixels and keeps the first try that fits
    inside the image, at a uniformly random whole-pixel position. When no try fits, the box is the
    central crop clamped to the ratio range.

    Parameters
    ----------
    n : int
        Number of boxes.
    height, width : int
        Image size in pixels.
    scale : (float, float)
        Range of the crop area as a fraction of the image area.
    ratio : (float, float)
        Range of the aspect ratio (width / height).
    generator : torch.Generator
        Source of randomness; the boxes are made on its device.

    Returns
    -------
    torch.Tensor
        float32 boxes of shape ``(n, 4)``: ``x1, y1, x2, y2`` in pixel coordinates, where pixel ``(i, j)``
        covers ``[j, j + 1] x [i, i + 1]``.
    """
    device = generator.device
    draws = torch.rand(2, CROP_ATTEMPTS, n, generator=generator, device=device)
    area = draws[0].mul_((scale[1] - scale[0]) * height * width).add_(scale[0] * height * width)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = draws[1].mul_(log_hi - log_lo).add_(log_lo).exp_()
    widths = torch.sqrt(area * aspect).round_()
    heights = torch.sqrt(area.div_(aspect)).round_()
    fits = (widths >= 1) & (widths <= width) & (heights >= 1) & (heights <= height)
    first_fit = fits & (fits.cumsum(dim=0) == 1)
    found = fits.any(dim=0)
    central_top, central_left, central_height, central_width = _central_box(height, width, ratio)
    box_height = torch.where(found, heights.mul_(first_fit).sum(dim=0), central_height)
    box_width = torch.where(found, widths.mul_(first_fit).sum(dim=0), central_width)
    position = torch.rand(2, n, generator=generator, device=device)
    top = torch.where(found, _random_offset(position[0], height - box_height), central_top)
    left = torch.where(found, _random_offset(position[1], width - box_width), central_left)
    return torch.stack((left, top, left + box_width, top + box_height), dim=1)


def _random_offset(uniform: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """A whole number uniform in ``[0, slack]`` from a uniform draw in [0, 1)."""
    return torch.minimum(uniform.mul_(slack + 1).floor_(), slack)


def _central_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float, float, float]:
    """``(top, left, height, width)`` of the whole image clamped to the ratio range, centred.

    This is torchvision's fallback crop, for when no attempt at a random box fits.
    """
    box_height, box_width = height, width
    if width / height < ratio[0]:
        box_height = round(width / ratio[0])
    elif width / height > ratio[1]:
        box_width = round(height * ratio[1])
    top, left = (height - box_height) // 2, (width - box_width) // 2
    return float(top), float(left), float(box_height), float(box_width)
