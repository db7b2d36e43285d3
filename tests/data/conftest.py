"""What the tests of the data share: image files written from arrays, random pixels, ImageFolder trees, a
torch Dataset of a list of items, and a user cache folder of each test's own. Each helper is a fixture that
returns the function (or class)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import Dataset

from imc_cluster.core.cache import CACHE_ENV


def _save_image(file: Path, array: np.ndarray, **options) -> np.ndarray:
    file.parent.mkdir(parents=True, exist_ok=True)
    grey = array.ndim == 3 and array.shape[2] == 1
    Image.fromarray(array[..., 0] if grey else array).save(file, **options)
    return array


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write_tree(root: Path, classes=("cat", "ant", "bee"), per_class: int = 3, shape=(32, 32, 3), seed=4):
    rng, images, labels = np.random.default_rng(seed), [], []
    for label, name in enumerate(sorted(classes)):
        for index in range(per_class):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            _save_image(root / name / f"{index:02d}.png", image)
            images.append(image)
            labels.append(label)
    return np.stack(images), np.array(labels)


class _ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


@pytest.fixture(scope="session")
def save_image():
    """``save_image(file, array, **options)``: an (H, W) or (H, W, C) uint8 array (C = 1: grey) written as an
    image file, its folders made, its format from the suffix and ``options`` given to PIL; returns the
    array."""
    return _save_image


@pytest.fixture(scope="session")
def noise():
    """``noise(shape, seed=0)``: uint8 pixels drawn uniformly from 0..255 by a generator seeded ``seed``."""
    return _noise


@pytest.fixture(scope="session")
def write_tree():
    """``write_tree(root, classes=("cat", "ant", "bee"), per_class=3, shape=(32, 32, 3), seed=4)``: an
    ImageFolder tree of random PNG files; returns images and labels in sorted-class, sorted-file order."""
    return _write_tree


@pytest.fixture(scope="session")
def list_dataset():
    """``list_dataset(items)``: a torch map-style Dataset whose item ``i`` is ``items[i]`` (a class)."""
    return _ListDataset


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory, monkeypatch) -> Path:
    """The user cache folder of this test (``$IMC_CLUSTER_CACHE_DIR``): empty, apart from the data folders,
    so that no test reads another's cache or writes into the home folder."""
    folder = tmp_path_factory.mktemp("user_cache")
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder
