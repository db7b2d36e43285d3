"""Inputs as arrays: the items of a torch Dataset (PIL images of any mode, tensors) decoded into one uint8
array."""

import numpy as np
import pytest
import torch
from PIL import Image

from imc_cluster.data.datasets import load_dataset
from imc_cluster.data.pil_images import images_from_dataset


def _pairs(images) -> list:
    """The items of a torch Dataset of (image, 0) pairs."""
    return [(image, 0) for image in images]


@pytest.mark.parametrize(
    "mode, values, expected",
    [
        ("I;16", np.array([[0, 32768], [65535, 1000]], np.uint16), [[0, 128], [255, 4]]),
        ("I", np.array([[0, 32768], [65535, 1000]], np.int32), [[0, 128], [255, 4]]),
        ("F", np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), [[0, 128], [255, 64]]),
    ],
)
def test_wide_pil_modes_in_a_dataset_are_scaled_not_clipped(mode, values, expected, list_dataset):
    image = Image.fromarray(values, mode=mode) if mode != "I;16" else Image.fromarray(values)
    assert image.mode == mode
    decoded = images_from_dataset(list_dataset([image, image]))
    np.testing.assert_array_equal(decoded[0, 0], expected)


def test_image_files_and_dataset_items_read_pil_modes_alike(tmp_path, list_dataset, noise):
    """Black-and-white, grey-with-alpha and palette images: one grey channel for the first two, RGB for the
    third, whether they come as files of a folder or as PIL images of a torch Dataset."""
    grey = noise((8, 8))
    images = {
        "a_bw": Image.fromarray(grey).convert("1"),
        "b_la": Image.fromarray(np.stack([grey, 255 - grey], axis=2), "LA"),
        "c_l": Image.fromarray(grey),
    }
    for name, image in images.items():
        (tmp_path / "x").mkdir(exist_ok=True)
        image.save(tmp_path / "x" / f"{name}.png")
    from_files = load_dataset("folder", tmp_path).train_images
    from_items = images_from_dataset(list_dataset(_pairs(list(images.values()))))
    assert from_files.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(from_items.transpose(0, 2, 3, 1), from_files)
    np.testing.assert_array_equal(from_files[1:, ..., 0], [grey, grey])
    assert set(np.unique(from_files[0])) <= {0, 255}
    palette = Image.fromarray(grey).convert("P")
    assert images_from_dataset(list_dataset(_pairs([palette]))).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_dataset_mixing_grey_and_colour_gives_rgb(as_tensor, list_dataset, noise):
    """As in image folders; PIL images are channels-last, tensors (as ToTensor makes them) channels-first."""
    grey = noise((8, 8))
    colour = noise((8, 8, 3), 1)
    items = [Image.fromarray(grey), Image.fromarray(colour)]
    if as_tensor:
        items = [torch.from_numpy(np.array(item)).reshape(8, 8, -1).permute(2, 0, 1) for item in items]
    images = images_from_dataset(list_dataset(_pairs(items)))
    np.testing.assert_array_equal(
        images, np.stack([np.repeat(grey[None], 3, axis=0), colour.transpose(2, 0, 1)])
    )
    with pytest.raises(ValueError, match="differ in shape"):
        images_from_dataset(list_dataset(_pairs([Image.fromarray(grey), Image.fromarray(colour[:6])])))
