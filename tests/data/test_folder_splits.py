"""The ``folder`` data set's splits: train/ and test/ folders, either alone, or neither; the test classes
among the training ones; the test images in the training images' channels; skipped files warned about."""

import numpy as np
import pytest
from PIL import Image

from imc_cluster.data.datasets import DatasetNotFoundError, load_dataset


def test_folder_with_train_and_test(tmp_path, write_tree):
    train_images, train_labels = write_tree(tmp_path / "train")
    test_images, test_labels = write_tree(tmp_path / "test", classes=("cat", "bee"), per_class=2, seed=5)
    data = load_dataset("folder", tmp_path, download=False)
    assert data.name == "FOLDER" and data.classes == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(data.train_images, train_images)
    np.testing.assert_array_equal(data.train_labels, train_labels)
    np.testing.assert_array_equal(data.test_images, test_images)
    np.testing.assert_array_equal(data.test_labels, test_labels + 1)  # bee, cat are classes 1, 2 of train
    assert data.crop_sizes == (28, 18)
    pixels = train_images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(data.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(data.std, pixels.std(axis=0), rtol=1e-9)


def test_folder_with_train_only_reads_its_classes_as_both_splits(tmp_path, write_tree):
    images, labels = write_tree(tmp_path / "train", classes=("b", "a"), per_class=2)
    data = load_dataset("folder", tmp_path)
    assert data.classes == ["a", "b"]
    for split_images, split_labels in (
        (data.train_images, data.train_labels),
        (data.test_images, data.test_labels),
    ):
        np.testing.assert_array_equal(split_images, images)
        np.testing.assert_array_equal(split_labels, labels)


def test_folder_with_test_only_names_the_missing_train_folder(tmp_path, write_tree):
    write_tree(tmp_path / "test", classes=("a",), per_class=1)
    with pytest.raises(DatasetNotFoundError, match="test/ but no train/") as error:
        load_dataset("folder", tmp_path)
    assert str(tmp_path / "train") in str(error.value)


def test_folder_without_split_is_both_splits_and_keeps_grey(tmp_path, write_tree):
    images, labels = write_tree(tmp_path, classes=("b", "a"), shape=(16, 16, 1))
    for _ in range(2):  # the second load finds the cache folder in the tree: it is not a class
        data = load_dataset("FOLDER", tmp_path, download=False)
        assert data.classes == ["a", "b"] and data.test_images is data.train_images
        np.testing.assert_array_equal(data.train_images, images)
        np.testing.assert_array_equal(data.test_labels, labels)
        assert data.crop_sizes == (14, 9) and len(data.mean) == len(data.std) == 1


def test_train_and_test_folders_without_classes_are_unlabelled_and_share_channels(
    tmp_path, save_image, noise
):
    save_image(tmp_path / "train" / "a.png", noise((5, 5, 3)))
    save_image(tmp_path / "train" / "b.png", noise((5, 5, 3), 1))
    grey = save_image(tmp_path / "test" / "g.png", noise((5, 5, 1), 2))
    data = load_dataset("folder", tmp_path)
    assert data.classes == [] and (data.train_labels == -1).all() and (data.test_labels == -1).all()
    np.testing.assert_array_equal(data.test_images[0], np.repeat(grey, 3, axis=2))  # the train's channels


def test_test_classes_must_be_train_classes(tmp_path, write_tree):
    write_tree(tmp_path / "train", classes=("a", "b"), per_class=1)
    write_tree(tmp_path / "test", classes=("a", "z"), per_class=1)
    with pytest.raises(ValueError, match="lacks, or whose files there cannot be decoded: z"):
        load_dataset("folder", tmp_path)


def test_corrupt_and_truncated_images_in_a_folder(tmp_path):
    for split in ("train", "test"):
        folder = tmp_path / split / "cats"
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "good.png")
    good = (tmp_path / "train" / "cats" / "good.png").read_bytes()
    (tmp_path / "train" / "cats" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="Skipped 1 image file.*cut.png"):
        data = load_dataset("folder", tmp_path)
    assert len(data.train_images) == 1
    (tmp_path / "train" / "cats" / "good.png").write_bytes(good[:10])
    with pytest.raises(ValueError, match=r"None of the 2 image files .* can be decoded"):
        load_dataset("folder", tmp_path)
