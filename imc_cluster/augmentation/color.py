"""Colour operations of the multi-crop augmentation, batched over images with per-image parameters.

:func:`color_jitter` adjusts brightness, contrast, saturation and hue with factors per image
(:func:`sample_jitter_factors`), in an order that is a random permutation per image
(:func:`sample_jitter_orders`), as torchvision's per-image ``ColorJitter`` draws it. The orders stay on
the device: the three blends are evaluated in three slots before one hue rotation (:func:`adjust_hue`,
vectorised RGB-HSV arithmetic) and three slots after it, and every image gets neutral parameters in the
slots its order leaves empty. A neutral blend is an exact identity; :data:`NEUTRAL_JITTER` are the
factors of an image that is not jittered.

Grayscale is the ITU-R 601-2 luma of the colours (:data:`LUMA_WEIGHTS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "LUMA_WEIGHTS",
    "NEUTRAL_JITTER",
    "sample_jitter_factors",
    "sample_jitter_orders",
    "color_jitter",
    "adjust_hue",
    "luma",
]

#: ITU-R 601-2 luma weights of red, green and blue
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: jitter factors that leave an image unchanged: brightness, contrast, saturation, hue shift
NEUTRAL_JITTER = (1.0, 1.0, 1.0, 0.0)
#: smallest chroma divided by in the hue computation (a smaller chroma means a gray pixel)
_MIN_CHROMA = 1e-12


def sample_jitter_factors(n: int, jitter: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """Per-image colour-jitter factors, as torchvision's ``ColorJitter`` draws them.

    Parameters
    ----------
    n : int
        Number of images.
    jitter : (float, float, float, float)
        Brightness, contrast, saturation and hue strengths.
    generator : torch.Generator
        Source of randomness; the factors are made on its device.

    Returns
    -------
    torch.Tensor
        float32 tensor of shape ``(4, n)``: brightness, contrast and saturation factors uniform in
        ``[max(0, 1 - j), 1 + j]``, and the hue shift uniform in ``[-h, h]``.
    """
    factors = torch.rand(4, n, generator=generator, device=generator.device)
    *blends, hue = jitter
    for op, strength in enumerate(blends):
        low = max(0.0, 1.0 - strength)
        factors[op].mul_(1.0 + strength - low).add_(low)
    factors[3].mul_(2.0 * hue).sub_(hue)
    return factors


def sample_jitter_orders(n: int, generator: torch.Generator) -> torch.Tensor:
    """Random orders of the four colour-jitter operations, one uniform permutation per image.

    Parameters
    ----------
    n : int
        Number of images.
    generator : torch.Generator
        Source of randomness; the orders are made on its device.

    Returns
    -------
    torch.Tensor
        int64 tensor of shape ``(n, 4)``: row ``i`` is a permutation of ``0..3``, the operations of
        image ``i`` in the order they are applied (0 brightness, 1 contrast, 2 saturation, 3 hue).
    """
    return torch.rand(n, 4, generator=generator, device=generator.device).argsort(dim=1)


def color_jitter(
    images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue adjustments, per image, in a given order per image.

    Each operation follows its ``torchvision.transforms.functional`` namesake: brightness scales the
    image, contrast blends it with the mean of its grayscale image, saturation blends it with its
    grayscale image (all three clamped to [0, 1]) and hue rotates the HSV hue. For one-channel images
    saturation and hue leave the image unchanged. Nothing is read back from the device: the three
    blends go into three slots before one hue rotation and three after it, and each image's order
    decides which blend, if any, fills each of its slots.

    Parameters
    ----------
    images : torch.Tensor
        float images in [0, 1] of shape ``(N, C, H, W)``, C in {1, 3}.
    factors : torch.Tensor
        Shape ``(4, N)``: brightness, contrast and saturation factors and hue shifts in [-0.5, 0.5].
    order : torch.Tensor
        Permutations of ``0..3`` on the images' device, one for all images (shape ``(4,)``) or one per
        image (shape ``(N, 4)``): ``order[..., k]`` is the operation of step ``k`` (0 brightness,
        1 contrast, 2 saturation, 3 hue).
    inplace : bool, default=False
        Whether to adjust ``images`` in place.

    Returns
    -------
    torch.Tensor
        The adjusted images (``images`` itself when ``inplace``).

    Raises
    ------
    ValueError
        When ``factors`` or ``order`` does not have one of the shapes above.
    """
    n = images.shape[0]
    if tuple(factors.shape) != (4, n):
        raise ValueError(f"factors must have shape (4, N) = (4, {n}), got {tuple(factors.shape)}.")
    if tuple(order.shape) not in ((4,), (n, 4)):
        raise ValueError(f"order must have shape (4,) or (N, 4) = ({n}, 4), got {tuple(order.shape)}.")
    if not inplace:
        images = images.clone()
    blend, contrast, saturation = _blend_slots(order.expand(n, 4), factors)
    for slot in range(len(blend)):
        if slot == len(blend) // 2 and images.shape[1] == 3:
            adjust_hue(images, factors[3], inplace=True)
        _blend_(images, blend[slot], contrast[slot], saturation[slot])
    return images


def _blend_slots(
    order: torch.Tensor,
    factors: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parameters of the six blend slots, three before the hue rotation and three after it.

    Slot ``j`` before the hue holds the operation at step ``j`` of an image's order when that step
    comes before the hue; slot ``j`` after it holds the operation at step ``j + 1`` when that step
    comes after the hue. Returns, each of shape ``(6, N)``: the blend factor (1 in an empty slot) and
    whether the blend target holds the grayscale mean (contrast) and the grayscale image (saturation).
    """
    steps = torch.arange(3, device=order.device).view(3, 1)
    hue_step = (order == 3).to(torch.uint8).argmax(dim=1)
    before = steps < hue_step
    empty = torch.full_like(before, -1, dtype=order.dtype)
    slots = torch.cat(
        (torch.where(before, order[:, :3].T, empty), torch.where(before, empty, order[:, 1:].T))
    )
    chosen = slots.unsqueeze(1) == steps.view(1, 3, 1)
    blend = torch.where(chosen, factors[:3], 1.0).prod(dim=1)
    return blend, chosen[:, 1].to(factors.dtype), chosen[:, 2].to(factors.dtype)


def adjust_hue(images: torch.Tensor, shifts: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Rotate the HSV hue of every image by its own shift, as ``torchvision``'s ``adjust_hue``.

    Parameters
    ----------
    images : torch.Tensor
        float RGB images in [0, 1] of shape ``(N, 3, H, W)``.
    shifts : torch.Tensor
        Hue shifts of shape ``(N,)``, in turns (1 is a full turn), at most half a turn either way.
    inplace : bool, default=False
        Whether to write the result into ``images``.

    Returns
    -------
    torch.Tensor
        The rotated images; HSV value and saturation are unchanged.

    Notes
    -----
    With ``M`` the largest channel and ``C`` the chroma (largest minus smallest channel), channel ``c``
    of a pixel of hue ``h`` (in sixths of a turn) is ``M - C * fade(h - q_c)``, where ``q = (3, 5, 7)``
    are the hues at which red, green and blue are smallest and ``fade(d) = clamp(2 - |d|_6, 0, 1)``
    with ``|d|_6`` the distance from ``d`` to the nearest multiple of 6. The image is rotated by
    evaluating this at the shifted hue; ``2 - |d|_6 = |||d| - 6| - 3| - 1`` for ``|d| <= 12``, which
    covers every shifted ``h - q_c`` here.
    """
    red, green, blue = images.split(1, dim=1)
    brightest = torch.maximum(red, green)
    torch.maximum(brightest, blue, out=brightest)
    chroma = torch.minimum(red, green)
    torch.minimum(chroma, blue, out=chroma)
    torch.sub(brightest, chroma, out=chroma)
    hue = _hue_sixths(red, green, blue, brightest, chroma).add_(6.0 * shifts.view(-1, 1, 1, 1))
    lowest_at = torch.arange(3, 8, 2, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    fade = torch.sub(hue, lowest_at, out=images if inplace else torch.empty_like(images))
    fade.abs_().sub_(6.0).abs_().sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    return fade.mul_(chroma).neg_().add_(brightest)


def _hue_sixths(
    red: torch.Tensor, green: torch.Tensor, blue: torch.Tensor, brightest: torch.Tensor, chroma: torch.Tensor
) -> torch.Tensor:
    """HSV hue in sixths of a turn, in [-1, 5], by the formula of the largest channel.

    Times the chroma, the hue is ``green - blue`` where red is largest, ``2 * chroma + blue - red``
    where green is and ``4 * chroma + red - green`` where blue is. The formula is picked arithmetically:
    ``sign(brightest - channel)`` is 0 where the channel is the largest and 1 elsewhere, and a lerp with
    a weight of exactly 0 or 1 returns exactly one of its ends. Where two channels tie for the largest,
    their formulas agree.
    """
    red_below = torch.sub(brightest, red).sign_()
    green_below = torch.sub(brightest, green).sign_()
    green_or_blue = torch.sub(blue, red).add_(chroma, alpha=2.0)
    blue_formula = torch.sub(red, green).add_(chroma, alpha=4.0)
    green_or_blue.lerp_(blue_formula, green_below)
    # the red formula and the divisor go into buffers that are no longer needed
    hue = torch.sub(green, blue, out=blue_formula).lerp_(green_or_blue, red_below)
    return hue.div_(torch.clamp_min(chroma, _MIN_CHROMA, out=red_below))


def _blend_(
    images: torch.Tensor, factor: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> None:
    """Blend every image in place with its own factor: ``clamp(f * image + (1 - f) * target, 0, 1)``.

    The target of image ``i`` is ``contrast[i]`` times the mean of its grayscale image plus
    ``saturation[i]`` times its grayscale image; with neither it is 0, a brightness change. A factor of
    1 leaves the image exactly as it is.
    """
    gray = luma(images)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    target = gray.mul_(saturation.view(-1, 1, 1, 1)).addcmul_(mean, contrast.view(-1, 1, 1, 1))
    torch.lerp(target, images, factor.view(-1, 1, 1, 1), out=images).clamp_(0.0, 1.0)


def luma(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of RGB images, shape ``(N, 1, H, W)``; one-channel images are copied."""
    if images.shape[1] == 1:
        return images.clone()
    red, green, blue = images.split(1, dim=1)
    return (red * LUMA_WEIGHTS[0]).add_(green, alpha=LUMA_WEIGHTS[1]).add_(blue, alpha=LUMA_WEIGHTS[2])
