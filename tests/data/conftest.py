"""What the tests of the data share: image files written from arrays, random pixels, ImageFolder trees, a
small Tiny-ImageNet, a torch Dataset of a list of items, and a user cache folder of each test's own. Each
helper is a fixture that returns the function (or class)."""

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


def _write_tiny(root: Path):
    """tiny-imagenet-200/ with 3 wnids (listed unsorted), 2 train JPEGs each (one grey), 4 val JPEGs."""
    rng, folder = np.random.default_rng(3), root / "tiny-imagenet-200"
    wnids = ["n03", "n01", "n02"]
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tcat\nn09\tunused\n")
    for wnid in wnids:
        for index in range(2):
            image = rng.integers(0, 256, (64, 64, 1 if (wnid, index) == ("n02", 1) else 3), dtype=np.uint8)
            _save_image(folder / "train" / wnid / "images" / f"{wnid}_{index}.JPEG", image)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t10\t10\n")
    val = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n03"), ("val_2.JPEG", "n01"), ("val_3.JPEG", "n02")]
    for file, _ in val:
        _save_image(folder / "val" / "images" / file, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (folder / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in val))
    return folder


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


@pytest.fixture(scope="session")
def write_tiny():
    """``write_tiny(root)``: ``root/tiny-imagenet-200`` as the archive unpacks, small: 3 wnids listed
    unsorted (n03, n01, n02), 2 train JPEGs of 64x64 each (n02_1 grey), 4 val JPEGs (n02, n03, n01, n02),
    words.txt naming n01 and n02; returns the folder."""
    return _write_tiny
