"""Features kept as float16 with a power-of-two scale per vector: float16's relative precision at every
magnitude, exact powers of two, non-finite values kept."""

import numpy as np
import pytest
import torch

from imc_cluster.core.halves import from_scaled_half, to_scaled_half


@pytest.mark.parametrize("magnitude", [1e-30, 1e-9, 1e-5, 1.0, 3e4, 1e6, 1e20])
def test_every_magnitude_keeps_float16_precision(magnitude):
    values = torch.from_numpy(np.random.default_rng(0).standard_normal((7, 3, 50))).float() * magnitude
    stored = to_scaled_half(values)
    assert stored.dtype == torch.float16 and stored.shape == (7, 3, 51)
    back = from_scaled_half(stored)
    assert back.dtype == torch.float32 and back.shape == values.shape
    largest = values.abs().amax(dim=-1, keepdim=True)
    # float16 keeps 11 significant bits: the error is at most half a unit of the largest value's last bit
    assert ((back - values).abs() <= largest * 2.0**-11).all()
    assert (back != 0).float().mean() > 0.99  # nothing flushed to zero


def test_the_scale_is_the_largest_value_s_power_of_two():
    values = torch.tensor([[0.75, -0.5, 0.25], [3.0, 1.0, 0.0], [-1e-8, 0.0, 0.0]])
    stored = to_scaled_half(values).float()
    exponents = stored[:, -1]
    assert exponents.tolist() == [0.0, 2.0, -26.0]  # 0.75 < 2**0, 3 < 2**2, 1e-8 < 2**-26
    assert (stored[:, :-1].abs().amax(dim=1) >= 0.5).all() and (stored[:, :-1].abs().amax(dim=1) < 1).all()
    assert torch.equal(from_scaled_half(to_scaled_half(values[:2])), values[:2])  # exact in float16


def test_zeros_and_non_finite_values():
    values = torch.tensor([[0.0, 0.0], [float("nan"), 1.0], [float("inf"), -2.0], [-float("inf"), 0.5]])
    back = from_scaled_half(to_scaled_half(values))
    assert torch.equal(back[0], values[0])
    assert back[1, 0].isnan() and back[2, 0] == float("inf") and back[3, 0] == -float("inf")
    assert back[1:, 1].tolist() == [1.0, -2.0, 0.5]
