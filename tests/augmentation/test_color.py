"""Colour jitter: its random factors and orders, and every colour operation against torchvision's."""

from collections import Counter

import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import stats

from imc_cluster.augmentation.color import (
    adjust_hue,
    color_jitter,
    sample_jitter_factors,
    sample_jitter_orders,
)

NEUTRAL = (1.0, 1.0, 1.0, 0.0)


#: torchvision's grayscale uses 0.2989 for red where ITU-R 601-2 (and this module) uses 0.299
LUMA_TOLERANCE = 1.2e-4


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(batch: int, channels: int = 3, height: int = 16, width: int = 16) -> torch.Tensor:
    shape = (batch, channels, height, width)
    return torch.randint(0, 256, shape, generator=generator(), dtype=torch.uint8)


def uniform_p_value(sample: torch.Tensor, low: float, high: float) -> float:
    return stats.kstest(sample.double().numpy(), stats.uniform(loc=low, scale=high - low).cdf).pvalue


# ------------------------------------------------------------------ colour jitter parameters


def test_jitter_factor_distributions():
    jitter = (0.4, 0.7, 1.5, 0.2)
    factors = sample_jitter_factors(20000, jitter, generator())
    assert factors.shape == (4, 20000)
    bounds = [(max(0.0, 1 - j), 1 + j) for j in jitter[:3]] + [(-jitter[3], jitter[3])]
    for row, (low, high) in zip(factors, bounds):
        assert low <= row.min() and row.max() <= high
        assert row.min() < low + 1e-3 * (high - low) and row.max() > high - 1e-3 * (high - low)
        assert uniform_p_value(row, low, high) > 0.01


def test_zero_jitter_strengths_give_neutral_factors():
    factors = sample_jitter_factors(100, (0.0, 0.0, 0.0, 0.0), generator())
    assert torch.equal(factors, torch.tensor(NEUTRAL).view(4, 1).expand(4, 100))


def test_jitter_orders_are_uniform_permutations_per_image():
    n = 24_000
    orders = sample_jitter_orders(n, generator())
    assert orders.shape == (n, 4) and orders.dtype == torch.int64
    assert torch.equal(orders.sort(dim=1).values, torch.arange(4).expand(n, 4))
    counts = Counter(map(tuple, orders.tolist()))
    assert len(counts) == 24
    assert stats.chisquare(list(counts.values())).pvalue > 0.01
    assert torch.equal(orders, sample_jitter_orders(n, generator()))


# ------------------------------------------------------------------ colour operations against torchvision


def colour_images(n: int = 32, height: int = 9, width: int = 11) -> torch.Tensor:
    """Random RGB images in [0, 1] with gray pixels, ties for the largest channel and pure colours."""
    images = random_images(n, height=height, width=width).float() / 255
    images[0] = images[0, :1]  # gray
    images[1, 1] = images[1, 0]  # red and green tie
    images[2, 2] = images[2, 1]  # green and blue tie
    images[3, 2] = images[3, 0]  # red and blue tie
    # black, the primaries, the secondaries and white
    corners = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]]
    images[4, :, 0, :8] = torch.tensor(corners, dtype=torch.float32).T
    return images


def per_image(op, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return torch.stack([op(image, float(factor)) for image, factor in zip(images, factors)])


def test_adjust_hue_matches_torchvision():
    images = colour_images()
    shifts = torch.linspace(-0.5, 0.5, len(images))
    expected = per_image(TF.adjust_hue, images, shifts)
    torch.testing.assert_close(adjust_hue(images, shifts), expected, atol=1e-5, rtol=0)
    copy = images.clone()
    result = adjust_hue(copy, shifts, inplace=True)
    assert result.data_ptr() == copy.data_ptr()
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)


def test_zero_hue_shift_and_neutral_jitter_are_identities():
    images = colour_images()
    torch.testing.assert_close(adjust_hue(images, torch.zeros(len(images))), images, atol=2e-6, rtol=0)
    neutral = torch.tensor(NEUTRAL).view(4, 1).expand(4, len(images))
    jittered = color_jitter(images, neutral, torch.tensor([2, 0, 3, 1]))
    torch.testing.assert_close(jittered, images, atol=5e-6, rtol=0)


@pytest.mark.parametrize(
    "op, reference, low, high, tolerance",
    [
        (0, TF.adjust_brightness, 0.0, 2.0, 1e-6),
        (1, TF.adjust_contrast, 0.0, 2.0, LUMA_TOLERANCE),
        (2, TF.adjust_saturation, 0.0, 2.0, LUMA_TOLERANCE),
        (3, TF.adjust_hue, -0.5, 0.5, 1e-5),
    ],
)
def test_each_jitter_op_matches_torchvision(op, reference, low, high, tolerance):
    images = colour_images()
    factors = torch.tensor(NEUTRAL).view(4, 1).repeat(1, len(images))
    factors[op] = torch.linspace(low, high, len(images))[torch.randperm(len(images), generator=generator())]
    expected = per_image(reference, images, factors[op])
    jittered = color_jitter(images, factors, torch.randperm(4, generator=generator(op)))
    torch.testing.assert_close(jittered, expected, atol=tolerance, rtol=0)


def test_one_channel_jitter_matches_torchvision():
    images = random_images(16, channels=1).float() / 255
    factors = torch.rand(4, 16, generator=generator()) + 0.5
    factors[3] -= 1.0
    expected = per_image(TF.adjust_contrast, per_image(TF.adjust_brightness, images, factors[0]), factors[1])
    jittered = color_jitter(images, factors, torch.tensor([3, 0, 2, 1]))
    torch.testing.assert_close(jittered, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_color_jitter_applies_ops_in_order(order):
    images = colour_images()
    factors = torch.rand(4, len(images), generator=generator()) * 1.2 + 0.4
    factors[3] = torch.rand(len(images), generator=generator(1)) - 0.5
    operations = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    expected = images
    for op in order:
        expected = per_image(operations[op], expected, factors[op])
    copy = images.clone()
    jittered = color_jitter(copy, factors, torch.tensor(order))
    torch.testing.assert_close(jittered, expected, atol=3 * LUMA_TOLERANCE, rtol=0)
    assert torch.equal(copy, images)  # not in place by default
    reverse = color_jitter(images, factors, torch.tensor(order[::-1]))
    assert (reverse - jittered).abs().max() > 1e-2


def test_color_jitter_applies_each_images_own_order():
    images = colour_images(48)
    factors = torch.rand(4, len(images), generator=generator()) * 1.2 + 0.4
    factors[3] = torch.rand(len(images), generator=generator(1)) - 0.5
    orders = sample_jitter_orders(len(images), generator(2))
    orders[:4] = torch.tensor([[3, 0, 1, 2], [0, 1, 2, 3], [1, 3, 2, 0], [2, 1, 0, 3]])  # hue at every step
    operations = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    expected = []
    for image, image_factors, order in zip(images, factors.T, orders.tolist()):
        for op in order:
            image = operations[op](image, float(image_factors[op]))
        expected.append(image)
    jittered = color_jitter(images, factors, orders)
    torch.testing.assert_close(jittered, torch.stack(expected), atol=3 * LUMA_TOLERANCE, rtol=0)
    other_order = (orders != orders[0]).any(dim=1)
    shared = color_jitter(images, factors, orders[0])
    changed = (shared - jittered)[other_order].abs().amax(dim=(1, 2, 3)) > 1e-3
    assert changed.double().mean() > 0.8  # some orders commute, brightness and hue for instance


@pytest.mark.parametrize(
    "factors_shape, order_shape, match",
    [
        ((4, 5), (5, 4), "factors must have shape"),
        ((4, 6), (5, 4), "order must have shape"),
        ((4, 6), (4, 6), "order must have shape"),
    ],
)
def test_color_jitter_rejects_mismatched_shapes(factors_shape, order_shape, match):
    images = colour_images(6)
    with pytest.raises(ValueError, match=match):
        color_jitter(images, torch.ones(factors_shape), torch.zeros(order_shape, dtype=torch.long))
