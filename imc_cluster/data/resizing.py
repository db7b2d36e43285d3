"""A pretrained network's evaluation preprocessing, and images brought to its input by that rule.

Pretrained networks come with their library's evaluation pipeline: resize (the shorter side, or both sides)
to ``resize`` pixels with an antialiased filter, take the centre ``size x size`` crop, and normalise. Images
of any size are kept as uint8 ``resize x resize`` squares (:func:`to_resize_square`): the shorter side
resized, then the centre square cut at the offset that makes the later centre crop (:func:`center_crop`)
the very pixels the library's own pipeline takes. The training views are random crops of these squares.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from imc_cluster.data.placement import batches

__all__ = ["RESIZE_MODES", "INTERPOLATIONS", "Preprocessing", "to_resize_square", "center_crop"]

#: how the resize before the centre crop keeps the aspect: the shorter side to ``resize`` ("shortest"),
#: or both sides to ``resize`` ("squash")
RESIZE_MODES = ("shortest", "squash")
#: interpolations of the libraries' evaluation pipelines that we apply alike
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
#: images resized at a time (bounds the float copy a resize makes)
_RESIZE_CHUNK = 64


@dataclass(frozen=True)
class Preprocessing:
    """A network's evaluation preprocessing, as its library states it.

    Attributes
    ----------
    size : int
        Side of the (square) network input, the centre crop.
    resize : int
        Side the image is resized to before the crop (the shorter side, or both for "squash").
    mode : {"shortest", "squash"}
        Whether the resize keeps the aspect ratio.
    interpolation : {"bilinear", "bicubic"}
        Resize filter (antialiased).
    mean, std : tuple of float
        Per-channel normalisation, in [0, 1] units.
    fixed_size : bool
        Whether the network takes inputs of ``size`` only (a vision transformer's position embedding, say),
        or of other sizes too.
    """

    size: int
    resize: int
    mode: str
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fixed_size: bool

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES or self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"The network's preprocessing ({self.mode} resize, {self.interpolation} interpolation) is "
                f"not supported: resize modes {RESIZE_MODES}, interpolations {tuple(INTERPOLATIONS)}."
            )
        if not 1 <= self.size <= self.resize:
            raise ValueError(f"The network's input side {self.size} exceeds its resize {self.resize}.")

    def as_dict(self) -> dict:
        """Plain data (checkpoints keep it)."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """The inverse of :meth:`as_dict`."""
        return cls(
            int(data["size"]),
            int(data["resize"]),
            str(data["mode"]),
            str(data["interpolation"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            bool(data["fixed_size"]),
        )


def _centre(length: int, crop: int) -> int:
    """The offset of a centre crop, rounded as torchvision's ``CenterCrop`` rounds it."""
    return round((length - crop) / 2.0)  # Python's rounding, as torchvision's


def _square_offset(length: int, p: Preprocessing) -> int:
    """Where the ``resize`` square starts along a side of ``length``: the crop of ``size`` centred in the
    square must be the one centred in the whole side."""
    return min(max(_centre(length, p.size) - _centre(p.resize, p.size), 0), length - p.resize)


def _resized_shape(height: int, width: int, p: Preprocessing) -> tuple[int, int]:
    if p.mode == "squash":
        return p.resize, p.resize
    if height <= width:
        return p.resize, int(p.resize * width / height)
    return int(p.resize * height / width), p.resize


def to_resize_square(images: torch.Tensor, p: Preprocessing) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` (C = 1 or 3; grey ones become RGB) as ``(N, 3, resize, resize)`` uint8
    squares, resized by the rule of ``p``."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    height, width = _resized_shape(*images.shape[2:], p)
    top, left = _square_offset(height, p), _square_offset(width, p)
    out = torch.empty((images.shape[0], 3, p.resize, p.resize), dtype=torch.uint8)
    for part in batches(images.shape[0], _RESIZE_CHUNK):
        chunk = images[part]
        if (height, width) != tuple(chunk.shape[2:]):
            chunk = TF.resize(
                chunk, [height, width], interpolation=INTERPOLATIONS[p.interpolation], antialias=True
            )
        out[part] = chunk[:, :, top : top + p.resize, left : left + p.resize]
    return out


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size x size`` crop of a batch of square images (torchvision's offsets)."""
    offset = _centre(images.shape[-1], size)
    return images[..., offset : offset + size, offset : offset + size]
