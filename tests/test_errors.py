"""Bad input gets a ValueError or TypeError from our code that names the problem, before any training, and
a failed call leaves a previously fitted estimator exactly as it was."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError
from torch.utils.data import Dataset

from imc_cluster import IMCSwAVClustering
from imc_cluster.datasets import load_dataset
from imc_cluster.persistence import CheckpointError, load_checkpoint, save_checkpoint


def images(n=12, shape=(8, 8, 3), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, size=(n, *shape)).astype(dtype)


def with_nan():
    X = images(dtype=np.float32) / 255
    X[3, 2, 2, 0] = np.nan
    return X


class MixedSizes(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, index):
        side = 8 if index < 6 else 9
        return Image.fromarray(np.zeros((side, side, 3), np.uint8)), 0


class NotImages(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, index):
        return "a caption", 0


#: (name, parameters set on a fitted estimator, X given to fit, error, message)
FIT_CASES = [
    ("NaN pixels", {}, with_nan, ValueError, "NaN"),
    ("infinite features", {}, lambda: np.array([[1.0, np.inf]] * 12), ValueError, "infinity"),
    ("1-D data", {}, lambda: np.arange(12.0), ValueError, "2D array"),
    ("5-D data", {}, lambda: np.zeros((12, 2, 8, 8, 3)), ValueError, "dimensions"),
    ("two channels", {}, lambda: images(shape=(8, 8, 2)), ValueError, "1 or 3 channels"),
    ("four channels", {}, lambda: images(shape=(4, 8, 8)), ValueError, "1 or 3 channels"),
    ("image_shape mismatch", dict(image_shape=(5, 5)), lambda: np.zeros((12, 64)), ValueError, "image_shape"),
    ("image_shape with 4 channels", dict(image_shape=(4, 4, 4)), lambda: np.zeros((12, 64)), ValueError,
     "channels"),
    ("image_shape with two -1", dict(image_shape=(-1, -1)), lambda: np.zeros((12, 64)), ValueError,
     "at most one -1"),
    ("empty data", {}, lambda: np.zeros((0, 5)), ValueError, "0 sample"),
    ("fewer samples than clusters", dict(n_clusters=20), images, ValueError, "n_clusters=20"),
    ("crop larger than the image", dict(large_crop_size=9), images, ValueError, "large_crop_size"),
    ("strings", {}, lambda: np.array([["a", "b"]] * 12), ValueError, "numeric|string"),
    ("complex numbers", {}, lambda: np.ones((12, 3)) * 1j, ValueError, "[Cc]omplex"),
    ("object images", {}, lambda: np.full((12, 4, 4, 3), None), TypeError, "numeric|dtype"),
    ("ragged rows", {}, lambda: [[1.0, 2.0], [3.0]] * 6, ValueError, "inhomogeneous|sequence"),
    ("ResNet on plain vectors", dict(backbone="resnet18"), lambda: np.zeros((12, 5)), ValueError,
     "needs images"),
    ("MLP with image_shape", dict(backbone="mlp", image_shape=(2, 2)), lambda: np.zeros((12, 4)),
     ValueError, "mlp"),
    ("unknown backbone", dict(backbone="vgg"), images, ValueError, "backbone"),
    ("no clusters", dict(n_clusters=0), images, ValueError, "n_clusters"),
    ("negative batch size", dict(batch_size=-4), images, ValueError, "batch_size"),
    ("zero temperature", dict(temperature=0.0), images, ValueError, "temperature"),
    ("reversed crop scale", dict(small_crop_scale=(0.5, 0.1)), images, ValueError, "small_crop_scale"),
    ("hue jitter over 0.5", dict(color_jitter=(0.4, 0.4, 0.4, 0.9)), images, ValueError, "color_jitter"),
    ("unknown device", dict(device="tpu"), images, ValueError, "device"),
    ("dataset of mixed image sizes", {}, MixedSizes, ValueError, "differ in shape"),
    ("dataset of non-images", {}, NotImages, TypeError, "PIL images, tensors or arrays"),
]


@pytest.fixture(scope="module")
def fitted():
    X = images()
    est = IMCSwAVClustering(n_clusters=3, backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16,
                            batch_size=16, max_epochs=1, warmup_updates=2, random_state=0).fit(X)
    return est, X


def assert_unchanged(est, reference, X):
    np.testing.assert_array_equal(est.predict(X), reference.predict(X))
    for a, b in zip(est.model_.state_dict().values(), reference.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert set(vars(est)) == set(vars(reference)) and est.input_shape_ == reference.input_shape_


@pytest.mark.parametrize("name, params, make_X, error, message", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_bad_fit_input(fitted, name, params, make_X, error, message):
    reference, X = fitted
    est = copy.deepcopy(reference)
    original = est.get_params()
    est.set_params(**params)
    with pytest.raises(error, match=message):
        est.fit(make_X())
    assert_unchanged(est.set_params(**original), reference, X)


#: (name, call on a fitted estimator (and its training images), error, message)
CALL_CASES = [
    ("predict on images of another size", lambda est, X: est.predict(images(shape=(10, 10, 3))), ValueError,
     r"\(3, 8, 8\)"),
    ("predict on vectors of another width", lambda est, X: est.predict(np.zeros((4, 7))), ValueError,
     "features"),
    ("eval_set labels of another length", lambda est, X: est.fit(X, eval_set=(X, np.zeros(5))), ValueError,
     "one label per sample"),
    ("eval_set that is not a pair", lambda est, X: est.fit(X, eval_set=X), ValueError, "pair"),
    ("eval_set images of another size", lambda est, X: est.fit(X, eval_set=(images(shape=(6, 6, 3)),
                                                                            np.zeros(12))), ValueError, "shape"),
    ("head_mask of another length", lambda est, X: est.fit(X, head_mask=np.ones(3, bool)), ValueError,
     "head_mask"),
    ("warm start on differently shaped data", lambda est, X: est.set_params(warm_start=True).fit(
        images(shape=(6, 6, 3))), ValueError, "fitted on"),
    ("unwritable checkpoint folder", lambda est, X: est.set_params(checkpoint_path="/proc/no/such/m.cpt").fit(X),
     ValueError, "Cannot write checkpoints"),
    ("score with labels of another length", lambda est, X: est.score(X, np.zeros(3)), ValueError,
     "one label per sample"),
]


@pytest.mark.parametrize("name, call, error, message", CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_bad_calls_on_a_fitted_estimator(fitted, name, call, error, message):
    reference, X = fitted
    est = copy.deepcopy(reference)
    original = est.get_params()
    with pytest.raises(error, match=message):
        call(est, X)
    assert_unchanged(est.set_params(**original), reference, X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda(tiny):
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny(device="cuda").fit(images())


def test_predict_before_fit(tiny):
    with pytest.raises(NotFittedError, match="not fitted"):
        tiny().predict(images())


def test_checkpoint_of_another_architecture_and_missing_paths(fitted, tmp_path):
    reference, _ = fitted
    reference.save(tmp_path / "m.cpt")
    content = load_checkpoint(tmp_path / "m.cpt")
    content["architecture"]["backbone"] = "resnet34"
    save_checkpoint(content, tmp_path / "other.cpt", "test")  # intact, but its weights are a ResNet-18's
    with pytest.raises(CheckpointError, match="architecture"):
        IMCSwAVClustering.load(tmp_path / "other.cpt")
    with pytest.raises(FileNotFoundError, match="absent"):
        load_dataset("folder", tmp_path / "absent", download=False)


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
    with pytest.raises(ValueError, match="None of the 2 image files .* can be decoded"):
        load_dataset("folder", tmp_path)


def test_batch_larger_than_the_data_still_trains(tiny):
    est = tiny(batch_size=500).fit(images())
    assert est.history_[0]["updates"] == 1 and est.labels_.shape == (12,)
