"""Tests of the batched multi-crop augmentation, its crop boxes and its colour operations."""

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from imc_cluster.augmentation import CropGroup, MultiCropAugmenter, normalize
from imc_cluster.colour import adjust_hue, color_jitter, sample_jitter_factors, sample_jitter_orders
from imc_cluster.crop_boxes import sample_crop_boxes

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)
#: normalisation that leaves the views in [0, 1]
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
#: no flip, jitter or grayscale: only the crop
CROP_ONLY = {"flip_prob": 0.0, "jitter_prob": 0.0, "grayscale_prob": 0.0}
NEUTRAL = (1.0, 1.0, 1.0, 0.0)
#: torchvision's grayscale uses 0.2989 for red where ITU-R 601-2 (and this module) uses 0.299
LUMA_TOLERANCE = 1.2e-4


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(batch: int, channels: int = 3, height: int = 16, width: int = 16) -> torch.Tensor:
    shape = (batch, channels, height, width)
    return torch.randint(0, 256, shape, generator=generator(), dtype=torch.uint8)


def whole_image(height: int, width: int, mean=RAW["mean"], std=RAW["std"], **kwargs) -> MultiCropAugmenter:
    """An augmenter whose only crop is the whole image at its own size."""
    return MultiCropAugmenter([CropGroup(1, (height, width), (1.0, 1.0))], mean, std,
                              ratio=(width / height, width / height), **kwargs)


def binomial_bounds(n: int, p: float, sigmas: float = 4.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(p * (1 - p) / n)
    return p - spread, p + spread


def uniform_p_value(sample: torch.Tensor, low: float, high: float) -> float:
    return stats.kstest(sample.double().numpy(), stats.uniform(loc=low, scale=high - low).cdf).pvalue


# ------------------------------------------------------------------ shapes, order, determinism


def test_output_shapes_dtypes_and_groups():
    groups = [CropGroup(2, (12, 16), (0.3, 1.0)), CropGroup(3, (5, 7), (0.05, 0.3))]
    views = MultiCropAugmenter(groups, MEAN, STD)(random_images(5, height=20, width=24), generator())
    assert [v.shape for v in views] == [(10, 3, 12, 16), (15, 3, 5, 7)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_one_channel_images():
    groups = [CropGroup(2, (6, 6), (0.3, 1.0)), CropGroup(1, (3, 4), (0.1, 0.3))]
    augment = MultiCropAugmenter(groups, (0.0,), (1.0,), grayscale_prob=1.0)
    views = augment(random_images(4, channels=1), generator())
    assert [v.shape for v in views] == [(8, 1, 6, 6), (4, 1, 3, 4)]
    assert all(v.min() >= 0 and v.max() <= 1 for v in views)


def test_views_are_crop_major_and_normalised():
    batch = 6
    steps = torch.arange(batch)
    colours = torch.stack([steps * 40, 255 - steps * 40, steps * 20], 1)
    images = colours.view(batch, 3, 1, 1).expand(batch, 3, 9, 9).to(torch.uint8).contiguous()
    groups = [CropGroup(3, (4, 5), (0.1, 1.0)), CropGroup(2, (2, 2), (0.05, 0.2))]
    views = MultiCropAugmenter(groups, MEAN, STD, **CROP_ONLY)(images, generator())
    expected = normalize(images[:, :, :1, :1], MEAN, STD)
    for group, group_views in zip(groups, views):
        for crop in range(group.n_crops):
            rows = group_views[crop * batch:(crop + 1) * batch]
            torch.testing.assert_close(rows, expected.expand_as(rows), atol=1e-5, rtol=0)


def test_deterministic_for_a_seed_and_different_for_another():
    groups = [CropGroup(2, (8, 8), (0.2, 1.0)), CropGroup(2, (4, 4), (0.05, 0.4))]
    augment = MultiCropAugmenter(groups, MEAN, STD)
    images = random_images(8)
    first, again, other = (augment(images, generator(seed)) for seed in (3, 3, 4))
    for a, b, c in zip(first, again, other):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
    shared = generator(3)
    assert not torch.allclose(augment(images, shared)[0], augment(images, shared)[0])


def test_views_are_independent_per_image_and_per_crop():
    images = random_images(1).expand(8, 3, 16, 16).contiguous()
    views = MultiCropAugmenter([CropGroup(4, (8, 8), (0.2, 1.0))], MEAN, STD)(images, generator())[0]
    distances = torch.cdist(views.flatten(1), views.flatten(1))
    off_diagonal = distances[~torch.eye(len(views), dtype=torch.bool)]
    assert off_diagonal.min() > 1e-2


def test_crops_are_independent_per_image_and_per_crop():
    images = random_images(1, height=32, width=32).expand(8, 3, 32, 32).contiguous()
    augment = MultiCropAugmenter([CropGroup(4, (8, 8), (0.08, 1.0))], MEAN, STD, **CROP_ONLY)
    views = augment(images, generator())[0]
    assert len(torch.unique(views, dim=0)) >= 30
    boxes = sample_crop_boxes(2000, 64, 64, (0.08, 1.0), (3 / 4, 4 / 3), generator())
    assert len(torch.unique(boxes, dim=0)) > 1900


# ------------------------------------------------------------------ crop boxes


def test_crop_area_and_aspect_ratio_distributions():
    height = width = 1000
    scale, ratio = (0.1, 0.5), (3 / 4, 4 / 3)
    boxes = sample_crop_boxes(4000, height, width, scale, ratio, generator())
    box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = box_width * box_height / (height * width)
    log_aspect = torch.log(box_width / box_height)
    assert uniform_p_value(area, *scale) > 0.01
    assert uniform_p_value(log_aspect, math.log(ratio[0]), math.log(ratio[1])) > 0.01
    assert scale[0] - 2e-3 <= area.min() and area.max() <= scale[1] + 2e-3
    assert math.log(ratio[0]) - 3e-3 <= log_aspect.min() and log_aspect.max() <= math.log(ratio[1]) + 3e-3
    assert uniform_p_value(boxes[:, 0] / (width - box_width + 1), 0, 1) > 0.01  # whole-pixel positions
    assert uniform_p_value(boxes[:, 1] / (height - box_height + 1), 0, 1) > 0.01


def test_crop_positions_are_uniform_over_whole_pixels():
    boxes = sample_crop_boxes(6000, 10, 12, (0.25, 0.25), (1.2, 1.2), generator())  # always 5 x 6
    assert torch.equal(boxes[:, 2:] - boxes[:, :2], torch.tensor([6.0, 5.0]).expand(6000, 2))
    for start, slack in ((boxes[:, 0], 6), (boxes[:, 1], 5)):
        counts = torch.bincount(start.long(), minlength=slack + 1)
        assert len(counts) == slack + 1
        assert stats.chisquare(counts.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("height, width", [(5, 7), (1, 17), (24, 3), (32, 32)])
def test_crop_boxes_inside_image_and_distributed_as_torchvision(height, width):
    scale, ratio, n = (0.08, 1.0), (3 / 4, 4 / 3), 3000
    boxes = sample_crop_boxes(n, height, width, scale, ratio, generator())
    assert torch.equal(boxes, boxes.round())
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
    ours = Counter((int(y2 - y1), int(x2 - x1)) for x1, y1, x2, y2 in boxes.tolist())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        image = torch.empty(1, height, width)
        theirs = Counter(RandomResizedCrop.get_params(image, list(scale), list(ratio))[2:] for _ in range(n))
    frequent = [size for size in ours | theirs if ours[size] + theirs[size] >= 20]
    table = [[counts[size] for size in frequent] + [n - sum(counts[size] for size in frequent)]
             for counts in (ours, theirs)]
    if table[0][-1] + table[1][-1] == 0:
        table = [row[:-1] for row in table]
    assert len(table[0]) >= 2
    assert stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.parametrize("height, width, ratio, expected", [(1, 17, (1.0, 1.0), (8, 0, 9, 1)),
                                                            (20, 3, (1.0, 1.0), (0, 8, 3, 11)),
                                                            (6, 6, (1.5, 1.5), (0, 1, 6, 5))])
def test_central_crop_when_no_attempt_fits(height, width, ratio, expected):
    boxes = sample_crop_boxes(5, height, width, (1.0, 1.0), ratio, generator())
    assert (boxes == torch.tensor(expected, dtype=torch.float32)).all()
    top, left, box_height, box_width = RandomResizedCrop.get_params(torch.empty(1, height, width), [1.0, 1.0],
                                                                    list(ratio))
    assert expected == (left, top, left + box_width, top + box_height)


# ------------------------------------------------------------------ colour jitter parameters and frequencies


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


@pytest.mark.parametrize("probability", [0.0, 0.8, 1.0])
def test_jitter_frequency(probability):
    batch = 2000
    images = torch.full((batch, 3, 4, 4), 100, dtype=torch.uint8)
    augment = whole_image(4, 4, flip_prob=0.0, grayscale_prob=0.0, jitter=(0.5, 0.0, 0.0, 0.0),
                          jitter_prob=probability)
    views = augment(images, generator())[0]
    changed = (views - 100 / 255).abs().amax(dim=(1, 2, 3)) > 1e-5
    low, high = binomial_bounds(batch, probability)
    assert low <= changed.double().mean() <= high


@pytest.mark.parametrize("probability", [0.0, 0.25, 1.0])
def test_grayscale_frequency_and_luma(probability):
    batch = 2000
    images = random_images(batch, height=3, width=3)
    augment = whole_image(3, 3, flip_prob=0.0, jitter_prob=0.0, grayscale_prob=probability)
    views = augment(images, generator())[0]
    gray = (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2)) < 1e-6
    low, high = binomial_bounds(batch, probability)
    assert low <= gray.double().mean() <= high
    red, green, blue = images[gray].double().div(255).unbind(1)
    luma = (0.299 * red + 0.587 * green + 0.114 * blue).unsqueeze(1).expand(-1, 3, -1, -1)
    torch.testing.assert_close(views[gray].double(), luma, atol=1e-6, rtol=0)
    torch.testing.assert_close(views[~gray], images[~gray].float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_flip_of_whole_image_crops(probability):
    batch = 1000
    images = random_images(1, height=5, width=7).expand(batch, 3, 5, 7).contiguous()
    augment = whole_image(5, 7, flip_prob=probability, jitter_prob=0.0, grayscale_prob=0.0)
    views = augment(images, generator())[0]
    plain = images.float() / 255
    same = (views - plain).abs().amax(dim=(1, 2, 3)) < 1e-6
    mirrored = (views - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert (same ^ mirrored).all()
    low, high = binomial_bounds(batch, probability)
    assert low <= mirrored.double().mean() <= high


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


@pytest.mark.parametrize("op, reference, low, high, tolerance", [
    (0, TF.adjust_brightness, 0.0, 2.0, 1e-6),
    (1, TF.adjust_contrast, 0.0, 2.0, LUMA_TOLERANCE),
    (2, TF.adjust_saturation, 0.0, 2.0, LUMA_TOLERANCE),
    (3, TF.adjust_hue, -0.5, 0.5, 1e-5),
])
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


@pytest.mark.parametrize("factors_shape, order_shape, match", [
    ((4, 5), (5, 4), "factors must have shape"),
    ((4, 6), (5, 4), "order must have shape"),
    ((4, 6), (4, 6), "order must have shape"),
])
def test_color_jitter_rejects_mismatched_shapes(factors_shape, order_shape, match):
    images = colour_images(6)
    with pytest.raises(ValueError, match=match):
        color_jitter(images, torch.ones(factors_shape), torch.zeros(order_shape, dtype=torch.long))


# ------------------------------------------------------------------ crop, identity and normalisation


@pytest.mark.parametrize("height, width, channels", [(32, 32, 3), (12, 20, 3), (7, 5, 1)])
def test_whole_image_crop_without_augmentation_is_normalize(height, width, channels):
    images = random_images(16, channels=channels, height=height, width=width)
    mean, std = MEAN[:channels], STD[:channels]
    expected = normalize(images, mean, std)
    for jitter_prob, jitter in ((0.0, (0.4, 0.4, 0.4, 0.1)), (1.0, (0.0, 0.0, 0.0, 0.0))):
        augment = whole_image(height, width, mean, std, flip_prob=0.0, grayscale_prob=0.0, jitter=jitter,
                              jitter_prob=jitter_prob)
        torch.testing.assert_close(augment(images, generator())[0], expected, atol=1e-5, rtol=0)


def test_downscaling_averages_the_source_area():
    images = random_images(4, height=32, width=32)
    augment = MultiCropAugmenter([CropGroup(1, (16, 8), (1.0, 1.0))], **RAW, ratio=(1.0, 1.0), **CROP_ONLY)
    expected = F.avg_pool2d(images.float() / 255, kernel_size=(2, 4))
    torch.testing.assert_close(augment(images, generator())[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels, height, width, size", [
    (3, 1, 1, (1, 1)), (3, 1, 9, (1, 3)), (1, 8, 8, (4, 4)), (3, 8, 8, (1, 1)), (3, 5, 3, (7, 2)),
])
def test_tiny_images_and_crops(channels, height, width, size):
    images = random_images(6, channels=channels, height=height, width=width)
    groups = [CropGroup(2, size, (0.08, 1.0)), CropGroup(1, (1, 1), (0.5, 0.5))]
    views = MultiCropAugmenter(groups, RAW["mean"][:channels], RAW["std"][:channels])(images, generator())
    assert [v.shape for v in views] == [(12, channels, *size), (6, channels, 1, 1)]
    assert all(v.min() >= 0 and v.max() <= 1 + 1e-6 for v in views)


def test_default_views_stay_in_unit_range():
    views = MultiCropAugmenter([CropGroup(2, (8, 8), (0.08, 1.0))], **RAW)(random_images(64), generator())[0]
    assert views.min() >= 0 and views.max() <= 1 + 1e-6


@pytest.mark.parametrize("as_tensor", [False, True])
def test_normalize(as_tensor):
    images = random_images(3, height=4, width=5)
    mean, std = (torch.tensor(MEAN), torch.tensor(STD)) if as_tensor else (MEAN, STD)
    column = (1, 3, 1, 1)
    expected = (images.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(column))
    expected /= torch.tensor(STD, dtype=torch.float64).view(column)
    result = normalize(images, mean, std)
    assert result.dtype == torch.float32 and result.shape == images.shape
    torch.testing.assert_close(result.double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("images, mean, std, error, match", [
    (torch.zeros(2, 3, 4, 4), MEAN, STD, TypeError, "uint8"),
    (torch.zeros(3, 4, 4, dtype=torch.uint8), MEAN, STD, ValueError, "shape"),
    (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), MEAN[:2], STD[:2], ValueError, "1 or 3 channels"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), MEAN, STD, ValueError, "channels"),
    (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), MEAN, STD[:1], ValueError, "mean and std"),
])
def test_normalize_rejects_bad_input(images, mean, std, error, match):
    with pytest.raises(error, match=match):
        normalize(images, mean, std)


# ------------------------------------------------------------------ validation


GROUP = CropGroup(1, (4, 4), (0.5, 1.0))


@pytest.mark.parametrize("n_crops, size, scale, match", [
    (0, (4, 4), (0.5, 1.0), "n_crops"),
    (1.5, (4, 4), (0.5, 1.0), "n_crops"),
    (1, (0, 4), (0.5, 1.0), "size"),
    (1, (4,), (0.5, 1.0), "size"),
    (1, 4, (0.5, 1.0), "size"),
    (1, (4, 4), (0.0, 1.0), "scale"),
    (1, (4, 4), (0.6, 0.5), "scale"),
    (1, (4, 4), (0.5, 1.2), "scale"),
    (1, (4, 4), (0.5,), "scale"),
])
def test_crop_group_validation(n_crops, size, scale, match):
    with pytest.raises(ValueError, match=match):
        CropGroup(n_crops, size, scale)


@pytest.mark.parametrize("groups, kwargs, error, match", [
    ([], {}, ValueError, "at least one"),
    ([(1, (4, 4), (0.5, 1.0))], {}, TypeError, "CropGroup"),
    ([GROUP], {"mean": MEAN, "std": STD[:2]}, ValueError, "mean and std"),
    ([GROUP], {"mean": MEAN[:2], "std": STD[:2]}, ValueError, "1 or 3"),
    ([GROUP], {"std": (0.2, 0.0, 0.3)}, ValueError, "std"),
    ([GROUP], {"std": (0.2, -1.0, 0.3)}, ValueError, "std"),
    ([GROUP], {"flip_prob": -0.1}, ValueError, "flip_prob"),
    ([GROUP], {"jitter_prob": 1.5}, ValueError, "jitter_prob"),
    ([GROUP], {"grayscale_prob": float("nan")}, ValueError, "grayscale_prob"),
    ([GROUP], {"jitter": (0.4, -0.1, 0.4, 0.1)}, ValueError, "non-negative"),
    ([GROUP], {"jitter": (0.4, 0.4, 0.4, 0.6)}, ValueError, "hue"),
    ([GROUP], {"jitter": (0.4, 0.4, 0.4)}, ValueError, "4 strengths"),
    ([GROUP], {"ratio": (0.0, 1.0)}, ValueError, "ratio"),
    ([GROUP], {"ratio": (2.0, 1.0)}, ValueError, "ratio"),
])
def test_augmenter_validation(groups, kwargs, error, match):
    kwargs = {"mean": MEAN, "std": STD, **kwargs}
    with pytest.raises(error, match=match):
        MultiCropAugmenter(groups, **kwargs)


@pytest.mark.parametrize("images, error, match", [
    (torch.zeros(2, 3, 8, 8), TypeError, "uint8"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, "shape"),
    (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), ValueError, "1 or 3 channels"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError, "channels"),
])
def test_call_rejects_bad_images(images, error, match):
    with pytest.raises(error, match=match):
        MultiCropAugmenter([GROUP], MEAN, STD)(images, generator())


def test_call_rejects_a_missing_generator():
    with pytest.raises(TypeError, match="generator"):
        MultiCropAugmenter([GROUP], MEAN, STD)(random_images(2), None)
