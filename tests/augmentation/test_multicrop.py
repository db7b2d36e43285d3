"""The batched multi-crop augmentation: views, their order and randomness, flip, jitter and greyscale
frequencies, normalisation, and the checks of every argument."""

import math

import pytest
import torch
import torch.nn.functional as F

from imc_cluster.augmentation.crop_boxes import sample_crop_boxes
from imc_cluster.augmentation.multicrop import CropGroup, MultiCropAugmenter, normalize

MEAN = (0.5, 0.4, 0.3)


STD = (0.2, 0.25, 0.3)


#: normalisation that leaves the views in [0, 1]
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


#: no flip, jitter or grayscale: only the crop
CROP_ONLY = {"flip_prob": 0.0, "color_jitter_prob": 0.0, "grayscale_prob": 0.0}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(batch: int, channels: int = 3, height: int = 16, width: int = 16) -> torch.Tensor:
    shape = (batch, channels, height, width)
    return torch.randint(0, 256, shape, generator=generator(), dtype=torch.uint8)


def whole_image(
    height: int, width: int, options: dict, mean=RAW["mean"], std=RAW["std"], **overrides
) -> MultiCropAugmenter:
    """An augmenter whose only crop is the whole image at its own size, with the settings ``options`` (the
    published ones) and ``overrides``."""
    return MultiCropAugmenter(
        [CropGroup(1, (height, width), (1.0, 1.0))],
        mean,
        std,
        ratio=(width / height, width / height),
        **{**options, **overrides},
    )


def binomial_bounds(n: int, p: float, sigmas: float = 4.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(p * (1 - p) / n)
    return p - spread, p + spread


# ------------------------------------------------------------------ shapes, order, determinism


def test_output_shapes_dtypes_and_groups(published_views):
    groups = [CropGroup(2, (12, 16), (0.3, 1.0)), CropGroup(3, (5, 7), (0.05, 0.3))]
    views = MultiCropAugmenter(groups, MEAN, STD, **published_views)(
        random_images(5, height=20, width=24), generator()
    )
    assert [v.shape for v in views] == [(10, 3, 12, 16), (15, 3, 5, 7)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_one_channel_images(published_views):
    groups = [CropGroup(2, (6, 6), (0.3, 1.0)), CropGroup(1, (3, 4), (0.1, 0.3))]
    augment = MultiCropAugmenter(groups, (0.0,), (1.0,), **{**published_views, "grayscale_prob": 1.0})
    views = augment(random_images(4, channels=1), generator())
    assert [v.shape for v in views] == [(8, 1, 6, 6), (4, 1, 3, 4)]
    assert all(v.min() >= 0 and v.max() <= 1 for v in views)


def test_views_are_crop_major_and_normalised(published_views):
    batch = 6
    steps = torch.arange(batch)
    colours = torch.stack([steps * 40, 255 - steps * 40, steps * 20], 1)
    images = colours.view(batch, 3, 1, 1).expand(batch, 3, 9, 9).to(torch.uint8).contiguous()
    groups = [CropGroup(3, (4, 5), (0.1, 1.0)), CropGroup(2, (2, 2), (0.05, 0.2))]
    views = MultiCropAugmenter(groups, MEAN, STD, **{**published_views, **CROP_ONLY})(images, generator())
    expected = normalize(images[:, :, :1, :1], MEAN, STD)
    for group, group_views in zip(groups, views):
        for crop in range(group.n_crops):
            rows = group_views[crop * batch : (crop + 1) * batch]
            torch.testing.assert_close(rows, expected.expand_as(rows), atol=1e-5, rtol=0)


def test_deterministic_for_a_seed_and_different_for_another(published_views):
    groups = [CropGroup(2, (8, 8), (0.2, 1.0)), CropGroup(2, (4, 4), (0.05, 0.4))]
    augment = MultiCropAugmenter(groups, MEAN, STD, **published_views)
    images = random_images(8)
    first, again, other = (augment(images, generator(seed)) for seed in (3, 3, 4))
    for a, b, c in zip(first, again, other):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
    shared = generator(3)
    assert not torch.allclose(augment(images, shared)[0], augment(images, shared)[0])


def test_views_are_independent_per_image_and_per_crop(published_views):
    images = random_images(1).expand(8, 3, 16, 16).contiguous()
    augment = MultiCropAugmenter([CropGroup(4, (8, 8), (0.2, 1.0))], MEAN, STD, **published_views)
    views = augment(images, generator())[0]
    distances = torch.cdist(views.flatten(1), views.flatten(1))
    off_diagonal = distances[~torch.eye(len(views), dtype=torch.bool)]
    assert off_diagonal.min() > 1e-2


def test_crops_are_independent_per_image_and_per_crop(published_views):
    images = random_images(1, height=32, width=32).expand(8, 3, 32, 32).contiguous()
    augment = MultiCropAugmenter(
        [CropGroup(4, (8, 8), (0.08, 1.0))], MEAN, STD, **{**published_views, **CROP_ONLY}
    )
    views = augment(images, generator())[0]
    assert len(torch.unique(views, dim=0)) >= 30
    boxes = sample_crop_boxes(2000, 64, 64, (0.08, 1.0), (3 / 4, 4 / 3), generator())
    assert len(torch.unique(boxes, dim=0)) > 1900


# ------------------------------------------------------------------ flip, jitter and greyscale frequencies


@pytest.mark.parametrize("probability", [0.0, 0.8, 1.0])
def test_jitter_frequency(probability, published_views):
    batch = 2000
    images = torch.full((batch, 3, 4, 4), 100, dtype=torch.uint8)
    augment = whole_image(
        4,
        4,
        published_views,
        flip_prob=0.0,
        grayscale_prob=0.0,
        color_jitter=(0.5, 0.0, 0.0, 0.0),
        color_jitter_prob=probability,
    )
    views = augment(images, generator())[0]
    changed = (views - 100 / 255).abs().amax(dim=(1, 2, 3)) > 1e-5
    low, high = binomial_bounds(batch, probability)
    assert low <= changed.double().mean() <= high


@pytest.mark.parametrize("probability", [0.0, 0.25, 1.0])
def test_grayscale_frequency_and_luma(probability, published_views):
    batch = 2000
    images = random_images(batch, height=3, width=3)
    augment = whole_image(
        3, 3, published_views, flip_prob=0.0, color_jitter_prob=0.0, grayscale_prob=probability
    )
    views = augment(images, generator())[0]
    gray = (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2)) < 1e-6
    low, high = binomial_bounds(batch, probability)
    assert low <= gray.double().mean() <= high
    red, green, blue = images[gray].double().div(255).unbind(1)
    luma = (0.299 * red + 0.587 * green + 0.114 * blue).unsqueeze(1).expand(-1, 3, -1, -1)
    torch.testing.assert_close(views[gray].double(), luma, atol=1e-6, rtol=0)
    torch.testing.assert_close(views[~gray], images[~gray].float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_flip_of_whole_image_crops(probability, published_views):
    batch = 1000
    images = random_images(1, height=5, width=7).expand(batch, 3, 5, 7).contiguous()
    augment = whole_image(
        5, 7, published_views, flip_prob=probability, color_jitter_prob=0.0, grayscale_prob=0.0
    )
    views = augment(images, generator())[0]
    plain = images.float() / 255
    same = (views - plain).abs().amax(dim=(1, 2, 3)) < 1e-6
    mirrored = (views - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert (same ^ mirrored).all()
    low, high = binomial_bounds(batch, probability)
    assert low <= mirrored.double().mean() <= high


# ------------------------------------------------------------------ crop, identity and normalisation


@pytest.mark.parametrize("height, width, channels", [(32, 32, 3), (12, 20, 3), (7, 5, 1)])
def test_whole_image_crop_without_augmentation_is_normalize(height, width, channels, published_views):
    images = random_images(16, channels=channels, height=height, width=width)
    mean, std = MEAN[:channels], STD[:channels]
    expected = normalize(images, mean, std)
    for jitter_prob, jitter in ((0.0, (0.4, 0.4, 0.4, 0.1)), (1.0, (0.0, 0.0, 0.0, 0.0))):
        augment = whole_image(
            height,
            width,
            published_views,
            mean,
            std,
            flip_prob=0.0,
            grayscale_prob=0.0,
            color_jitter=jitter,
            color_jitter_prob=jitter_prob,
        )
        torch.testing.assert_close(augment(images, generator())[0], expected, atol=1e-5, rtol=0)


def test_downscaling_averages_the_source_area(published_views):
    images = random_images(4, height=32, width=32)
    augment = MultiCropAugmenter(
        [CropGroup(1, (16, 8), (1.0, 1.0))], **RAW, ratio=(1.0, 1.0), **{**published_views, **CROP_ONLY}
    )
    expected = F.avg_pool2d(images.float() / 255, kernel_size=(2, 4))
    torch.testing.assert_close(augment(images, generator())[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "channels, height, width, size",
    [
        (3, 1, 1, (1, 1)),
        (3, 1, 9, (1, 3)),
        (1, 8, 8, (4, 4)),
        (3, 8, 8, (1, 1)),
        (3, 5, 3, (7, 2)),
    ],
)
def test_tiny_images_and_crops(channels, height, width, size, published_views):
    images = random_images(6, channels=channels, height=height, width=width)
    groups = [CropGroup(2, size, (0.08, 1.0)), CropGroup(1, (1, 1), (0.5, 0.5))]
    augment = MultiCropAugmenter(groups, RAW["mean"][:channels], RAW["std"][:channels], **published_views)
    views = augment(images, generator())
    assert [v.shape for v in views] == [(12, channels, *size), (6, channels, 1, 1)]
    assert all(v.min() >= 0 and v.max() <= 1 + 1e-6 for v in views)


def test_published_views_stay_in_unit_range(published_views):
    augment = MultiCropAugmenter([CropGroup(2, (8, 8), (0.08, 1.0))], **RAW, **published_views)
    views = augment(random_images(64), generator())[0]
    assert views.min() >= 0 and views.max() <= 1 + 1e-6


@pytest.mark.parametrize("as_tensor", [False, True])
def test_normalize(as_tensor):
    images = random_images(3, height=4, width=5)
    mean, std = (torch.tensor(MEAN), torch.tensor(STD)) if as_tensor else (MEAN, STD)
    column = (1, 3, 1, 1)
    expected = images.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(column)
    expected /= torch.tensor(STD, dtype=torch.float64).view(column)
    result = normalize(images, mean, std)
    assert result.dtype == torch.float32 and result.shape == images.shape
    torch.testing.assert_close(result.double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "images, mean, std, error, match",
    [
        (torch.zeros(2, 3, 4, 4), MEAN, STD, TypeError, "uint8"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), MEAN, STD, ValueError, "shape"),
        (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), MEAN[:2], STD[:2], ValueError, "1 or 3 channels"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), MEAN, STD, ValueError, "channels"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), MEAN, STD[:1], ValueError, "mean and std"),
    ],
)
def test_normalize_rejects_bad_input(images, mean, std, error, match):
    with pytest.raises(error, match=match):
        normalize(images, mean, std)


# ------------------------------------------------------------------ validation


GROUP = CropGroup(1, (4, 4), (0.5, 1.0))


@pytest.mark.parametrize(
    "n_crops, size, scale, match",
    [
        (0, (4, 4), (0.5, 1.0), "n_crops"),
        (1.5, (4, 4), (0.5, 1.0), "n_crops"),
        (1, (0, 4), (0.5, 1.0), "size"),
        (1, (4,), (0.5, 1.0), "size"),
        (1, 4, (0.5, 1.0), "size"),
        (1, (4, 4), (0.0, 1.0), "scale"),
        (1, (4, 4), (0.6, 0.5), "scale"),
        (1, (4, 4), (0.5, 1.2), "scale"),
        (1, (4, 4), (0.5,), "scale"),
    ],
)
def test_crop_group_validation(n_crops, size, scale, match):
    with pytest.raises(ValueError, match=match):
        CropGroup(n_crops, size, scale)


@pytest.mark.parametrize(
    "groups, kwargs, error, match",
    [
        ([], {}, ValueError, "at least one"),
        ([(1, (4, 4), (0.5, 1.0))], {}, TypeError, "CropGroup"),
        (
            [GROUP],
            {"mean": MEAN, "std": STD[:2]},
            ValueError,
            r"mean/std must be a pair \(mean, std\) of equally long",
        ),
        ([GROUP], {"mean": MEAN[:2], "std": STD[:2]}, ValueError, "1 or 3"),
        ([GROUP], {"std": (0.2, 0.0, 0.3)}, ValueError, "std"),
        ([GROUP], {"std": (0.2, -1.0, 0.3)}, ValueError, "std"),
        ([GROUP], {"flip_prob": -0.1}, ValueError, r"flip_prob must be a finite number in \[0.0, 1.0\]"),
        (
            [GROUP],
            {"color_jitter_prob": 1.5},
            ValueError,
            r"color_jitter_prob must be a finite number in \[0.0, 1.0\]",
        ),
        ([GROUP], {"grayscale_prob": float("nan")}, ValueError, "grayscale_prob must be a finite number"),
        ([GROUP], {"color_jitter": (0.4, -0.1, 0.4, 0.1)}, ValueError, "color_jitter must be 4 non-negative"),
        ([GROUP], {"color_jitter": (0.4, 0.4, 0.4, 0.6)}, ValueError, r"color_jitter must be .* hue <= 0\.5"),
        ([GROUP], {"color_jitter": (0.4, 0.4, 0.4)}, ValueError, "color_jitter must be 4 "),
        ([GROUP], {"ratio": (0.0, 1.0)}, ValueError, "ratio"),
        ([GROUP], {"ratio": (2.0, 1.0)}, ValueError, "ratio"),
    ],
)
def test_augmenter_validation(groups, kwargs, error, match, published_views):
    kwargs = {"mean": MEAN, "std": STD, **published_views, **kwargs}
    with pytest.raises(error, match=match):
        MultiCropAugmenter(groups, **kwargs)


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.zeros(2, 3, 8, 8), TypeError, "uint8"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, "shape"),
        (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), ValueError, "1 or 3 channels"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError, "channels"),
    ],
)
def test_call_rejects_bad_images(images, error, match, published_views):
    with pytest.raises(error, match=match):
        MultiCropAugmenter([GROUP], MEAN, STD, **published_views)(images, generator())


def test_call_rejects_a_missing_generator(published_views):
    with pytest.raises(TypeError, match="generator"):
        MultiCropAugmenter([GROUP], MEAN, STD, **published_views)(random_images(2), None)
