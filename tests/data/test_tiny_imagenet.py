"""Tiny-ImageNet-200 read from a small copy in its archive's layout: labels by sorted wnid, test = the
labelled val split, names from words.txt, grey images as RGB; each missing or inconsistent file named."""

import shutil
from urllib.error import URLError

import numpy as np
import pytest

from imc_cluster.data import tiny_imagenet
from imc_cluster.data.datasets import DatasetNotFoundError, load_dataset
from imc_cluster.data.tiny_imagenet import load_tiny_imagenet


@pytest.mark.parametrize("inside", [False, True])
def test_tiny_imagenet(tmp_path, inside, write_tiny, user_cache):
    folder = write_tiny(tmp_path)
    data = load_dataset("TINY", folder if inside else tmp_path, download=False)
    assert data.name == "TINY" and data.crop_sizes == (56, 36)
    assert data.train_images.shape == (6, 64, 64, 3) and data.test_images.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(data.train_labels, [0, 0, 1, 1, 2, 2])  # sorted wnids: n01, n02, n03
    np.testing.assert_array_equal(data.test_labels, [1, 2, 0, 1])  # val_annotations.txt order
    assert data.classes == ["goldfish, Carassius auratus", "cat", "n03"]
    grey = data.train_images[3]  # n02_1.JPEG, stored grey
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert len(list(user_cache.glob("decoded/tiny-imagenet-200-*/*.npz"))) == 2  # train and val


def test_without_words_the_classes_are_the_wnids(tmp_path, write_tiny, user_cache):
    folder = write_tiny(tmp_path)
    (folder / "words.txt").unlink()
    train, test, names = load_tiny_imagenet(tmp_path, download=False)
    assert names == ["n01", "n02", "n03"]
    assert train[0].shape == (6, 64, 64, 3) and list(test[1]) == [1, 2, 0, 1]


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda folder: (folder / "wnids.txt").unlink(), "wnids.txt"),
        (lambda folder: (folder / "val" / "val_annotations.txt").unlink(), "val_annotations.txt"),
        (lambda folder: shutil.rmtree(folder / "train"), "train"),
        (lambda folder: shutil.rmtree(folder / "train" / "n01"), "n01"),
        (lambda folder: (folder / "val" / "images" / "val_2.JPEG").unlink(), "val_2.JPEG"),
    ],
)
def test_a_missing_part_is_named(tmp_path, write_tiny, user_cache, damage, named):
    damage(write_tiny(tmp_path))
    with pytest.raises(FileNotFoundError, match=named) as error:
        load_tiny_imagenet(tmp_path, download=False)
    assert "\n" not in str(error.value)


def test_a_val_class_that_wnids_lacks_is_named(tmp_path, write_tiny, user_cache):
    folder = write_tiny(tmp_path)
    annotations = folder / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("n03", "n99"))
    with pytest.raises(ValueError, match=r"n99, which wnids\.txt lacks"):
        load_tiny_imagenet(tmp_path, download=False)


def test_a_failed_download_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tiny_imagenet, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError, match=r"download failed: .*no network") as error:
        load_tiny_imagenet(tmp_path, download=True)
    assert str(tmp_path) in str(error.value) and "wnids.txt" in str(error.value)
