"""A pretrained network's evaluation preprocessing: our uint8 ``resize`` squares, centre-cropped and
normalised, are the tensors of each library's own evaluation pipeline (torchvision, timm, open_clip) on PIL
images of any size, aspect and mode; and the rules of :mod:`imc_cluster.data.resizing` one by one."""

import numpy as np
import open_clip
import pytest
import timm
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from imc_cluster.data.resizing import Preprocessing, center_crop, to_resize_square
from imc_cluster.model.pretrained import network_preprocessing

#: PIL images (H, W[, 3]) of every kind: landscape, portrait, odd sides, smaller than the input, far from
#: square, exactly the input or the resize side, grey ("L")
SHAPES = [
    (300, 400, 3),
    (400, 300, 3),
    (255, 317, 3),
    (37, 53, 3),
    (23, 91, 3),
    (224, 224, 3),
    (120, 90),
    (71, 160),
]

#: the measured worst mean absolute difference over SHAPES is 1.8e-4 (open_clip, bicubic, upsampled noise)
MEAN_BOUND = 3e-4
#: uint8 levels the two resizes may differ by (measured: 2, bicubic upsampling of noise)
LEVELS = 2


def _library_pipelines() -> dict:
    """Each library's own evaluation transform, by the backbone whose preprocessing we take from it."""
    resnet = torchvision.models.get_model_weights("resnet18").DEFAULT.transforms()
    vit = timm.create_model("test_vit", num_classes=0)
    cnn = timm.create_model("test_resnet", num_classes=0)
    _, _, clip = open_clip.create_model_and_transforms("ViT-S-32-alt")
    return {
        "torchvision:resnet18": resnet,
        "timm:test_vit": timm.data.create_transform(
            **timm.data.resolve_model_data_config(vit), is_training=False
        ),
        "timm:test_resnet": timm.data.create_transform(
            **timm.data.resolve_model_data_config(cnn), is_training=False
        ),
        "open_clip:ViT-S-32-alt": clip,
    }


@pytest.fixture(scope="module")
def pipelines() -> dict:
    return _library_pipelines()


@pytest.fixture(scope="module")
def preprocessing(pipelines) -> dict:
    """The preprocessing the package reads from each library, by backbone."""
    return {backbone: network_preprocessing(backbone) for backbone in pipelines}


def _ours(image: Image.Image, p: Preprocessing) -> torch.Tensor:
    """Our pipeline on one PIL image: uint8 resize square, centre crop, normalisation."""
    array = torch.from_numpy(np.array(image))
    batch = array[None, None] if array.dim() == 2 else array.permute(2, 0, 1)[None]
    square = to_resize_square(batch, p)
    assert square.dtype == torch.uint8 and square.shape == (1, 3, p.resize, p.resize)
    crop = center_crop(square, p.size).float() / 255
    mean, std = torch.tensor(p.mean).view(1, 3, 1, 1), torch.tensor(p.std).view(1, 3, 1, 1)
    return ((crop - mean) / std)[0]


def _noise(shape, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize(
    "backbone", ["torchvision:resnet18", "timm:test_vit", "timm:test_resnet", "open_clip:ViT-S-32-alt"]
)
def test_matches_the_library_evaluation_pipeline(pipelines, preprocessing, backbone):
    p = preprocessing[backbone]
    library = pipelines[backbone]
    worst_levels = 0.0
    for seed, shape in enumerate(SHAPES):
        image = _noise(shape, seed)
        theirs = library(image.convert("RGB"))  # the libraries take RGB images
        ours = _ours(image, p)
        assert ours.shape == theirs.shape == (3, p.size, p.size), shape
        difference = (ours - theirs).abs()
        assert difference.mean() < MEAN_BOUND, shape
        levels = float(difference.max()) * min(p.std) * 255
        assert levels <= LEVELS + 1e-3, shape
        worst_levels = max(worst_levels, levels)
    assert worst_levels > 0  # the two resizes differ somewhere: the bound above is what is tested


@pytest.mark.parametrize("backbone", ["torchvision:resnet18", "open_clip:ViT-S-32-alt"])
def test_an_image_of_the_resize_side_is_only_cropped(pipelines, preprocessing, backbone):
    p = preprocessing[backbone]
    image = _noise((p.resize, p.resize, 3), 7)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    assert torch.equal(to_resize_square(pixels, p), pixels)
    assert torch.equal(_ours(image, p), pipelines[backbone](image))


def _preprocessing(size=7, resize=10, mode="shortest", interpolation="bilinear") -> Preprocessing:
    return Preprocessing(size, resize, mode, interpolation, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), False)


@pytest.mark.parametrize("shape", [(13, 29), (29, 13), (10, 10), (4, 9), (11, 10), (40, 41), (10, 31)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_the_square_holds_the_centre_crop_of_the_whole_resized_image(shape, interpolation):
    p = _preprocessing(interpolation=interpolation)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, *shape), dtype=np.uint8))
    height, width = shape
    short, long_ = min(shape), max(shape)
    resized_long = int(p.resize * long_ / short)  # torchvision's Resize(int) rule
    size = [p.resize, resized_long] if height <= width else [resized_long, p.resize]
    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[interpolation]
    whole = TF.resize(images, size, interpolation=mode, antialias=True)
    expected = TF.center_crop(whole, [p.size, p.size])
    square = to_resize_square(images, p)
    assert square.shape == (2, 3, p.resize, p.resize)
    assert torch.equal(center_crop(square, p.size), expected)


def test_squash_resizes_both_sides():
    p = _preprocessing(mode="squash")
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 3, 13, 31), dtype=np.uint8))
    expected = TF.resize(images, [10, 10], interpolation=InterpolationMode.BILINEAR, antialias=True)
    assert torch.equal(to_resize_square(images, p), expected)


def test_grey_images_become_rgb():
    p = _preprocessing()
    grey = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 1, 15, 12), dtype=np.uint8))
    square = to_resize_square(grey, p)
    assert square.shape == (2, 3, 10, 10)
    assert torch.equal(square[:, 0], square[:, 1]) and torch.equal(square[:, 0], square[:, 2])
    assert torch.equal(square, to_resize_square(grey.expand(-1, 3, -1, -1).contiguous(), p))


def test_many_images_are_resized_alike_in_chunks():
    p = _preprocessing()
    images = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (70, 3, 9, 14), dtype=np.uint8))
    together = to_resize_square(images, p)
    one_by_one = torch.cat([to_resize_square(image[None], p) for image in images])
    assert torch.equal(together, one_by_one)


@pytest.mark.parametrize("side, size", [(10, 7), (11, 7), (10, 8), (9, 9), (224, 160)])
def test_center_crop_takes_torchvisions_offsets(side, size):
    images = torch.arange(2 * 3 * side * side, dtype=torch.int64).view(2, 3, side, side)
    assert torch.equal(center_crop(images, size), TF.center_crop(images, [size, size]))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(mode="border"), "border.*not supported"),
        (dict(interpolation="nearest"), "nearest.*not supported"),
        (dict(size=11), "11 exceeds its resize 10"),
        (dict(size=0), "input side 0"),
    ],
)
def test_unsupported_preprocessing_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        _preprocessing(**change)


def test_preprocessing_round_trips_as_plain_data():
    p = Preprocessing(160, 168, "squash", "bicubic", (0.5, 0.5, 0.5), (0.25, 0.5, 0.75), True)
    data = p.as_dict()
    assert data == {
        "size": 160,
        "resize": 168,
        "mode": "squash",
        "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.5, 0.75],
        "fixed_size": True,
    }
    assert Preprocessing.from_dict(data) == p
