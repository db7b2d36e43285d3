"""Feature vectors kept in float16 with a power-of-two scale each, so that any magnitude keeps float16's
relative precision.

Plain float16 holds magnitudes from about 6e-5 to 65504 at full precision: a network whose features are
all tiny (a randomly initialised one can give 1e-8) would be cached as zeros, and one with outliers above
65504 as infinities. Each vector is stored instead as its values divided by ``2 ** e`` (its largest
magnitude then lies in [0.5, 1)), followed by ``e`` itself, which float16 holds exactly: ``d`` features take
``d + 1`` float16 values. Dividing by a power of two is exact, so a vector's stored values are its float16
rounding at its own scale.
"""

from __future__ import annotations

import torch

__all__ = ["to_scaled_half", "from_scaled_half"]


def to_scaled_half(features: torch.Tensor) -> torch.Tensor:
    """Vectors ``(..., d)`` as float16 ``(..., d + 1)``: each scaled by a power of two, then its exponent.

    Non-finite values stay non-finite; a vector of zeros (or with a non-finite largest value) has the
    exponent 0.
    """
    features = features.float()
    largest = features.abs().amax(dim=-1, keepdim=True)
    _, exponent = torch.frexp(torch.where(torch.isfinite(largest), largest, torch.zeros_like(largest)))
    scaled = torch.ldexp(features, -exponent)
    return torch.cat([scaled, exponent.float()], dim=-1).to(torch.float16)


def from_scaled_half(stored: torch.Tensor) -> torch.Tensor:
    """The float32 vectors ``(..., d)`` of :func:`to_scaled_half`'s ``(..., d + 1)``."""
    stored = stored.float()
    return torch.ldexp(stored[..., :-1], stored[..., -1:])
