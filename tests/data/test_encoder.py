"""The input encoder: the same pixels give the same result in any form, every kind of container is read or
refused clearly, images are not copied, feature vectors keep their precision, and parameters changed after
fit never make the model inconsistent."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from imc_cluster import IMCSwAVClustering
from imc_cluster.data.encoder import InputEncoder


def to_tensor_items(images, list_dataset):
    """What ``ToTensor()`` gives: float32 (C, H, W) in [0, 1], with a target."""
    return list_dataset(
        [(torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255), 0) for image in images]
    )


class Stream(IterableDataset):
    def __init__(self, images):
        self.images = images

    def __iter__(self):
        return iter(Image.fromarray(image) for image in self.images)


def forms(images, list_dataset):
    """The same pixels as uint8 arrays, float arrays in [0, 1], channels-first tensors, a ToTensor Dataset
    (of ``list_dataset``), an iterable Dataset of PIL images, a DataLoader, a uint16 array, and tensors that
    require grad."""
    floats = images.astype(np.float32) / 255
    as_tensor = torch.from_numpy(floats.transpose(0, 3, 1, 2).copy())
    return {
        "uint8": images,
        "float32 in [0, 1]": floats,
        "float64 in [0, 1]": images / 255.0,
        "tensor NCHW": as_tensor,
        "tensor requiring grad": as_tensor.clone().requires_grad_(),
        "ToTensor Dataset": to_tensor_items(images, list_dataset),
        "IterableDataset of PIL images": Stream(images),
        "DataLoader": DataLoader(TensorDataset(as_tensor, torch.zeros(len(images))), batch_size=5),
        "uint16": images.astype(np.uint16) * 257,
        "bfloat16 tensor": torch.from_numpy(images / 255.0).bfloat16(),
        "channels-first uint8": np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
    }


@pytest.mark.parametrize("form", sorted(forms(np.zeros((1, 2, 2, 3), np.uint8), list)))  # only the names
def test_the_same_pixels_in_any_form_give_the_same_result(fitted_on_uint8, pixels, form, list_dataset):
    X = forms(pixels[0], list_dataset)[form]
    np.testing.assert_array_equal(fitted_on_uint8.predict_proba(X), fitted_on_uint8.predict_proba(pixels[0]))


@pytest.mark.parametrize("form", ["float32 in [0, 1]", "ToTensor Dataset", "uint16"])
def test_fit_on_another_form_gives_the_same_model(pixels, form, tiny_params, list_dataset):
    reference = IMCSwAVClustering(**{**tiny_params, "n_clusters": 3}).fit(pixels[0])
    other = IMCSwAVClustering(**{**tiny_params, "n_clusters": 3}).fit(forms(pixels[0], list_dataset)[form])
    for a, b in zip(reference.model_.state_dict().values(), other.model_.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(other.predict(pixels[0]), reference.labels_)


def test_floats_beyond_the_training_scale_are_an_error(fitted_on_uint8, pixels):
    with pytest.raises(ValueError, match="outside the range"):
        fitted_on_uint8.predict(pixels[0].astype(np.float32) * 2)  # up to 510: not 8-bit pixels
    est = IMCSwAVClustering(
        n_clusters=3, backbone_width=4, n_prototypes=10, head_hidden_dim=8, max_epochs=1, batch_size=16
    ).fit(pixels[0] / 255.0)
    with pytest.raises(ValueError, match=r"outside the range \[0, 1\]"):
        est.predict(pixels[0].astype(np.float32))  # 0..255 floats given to a model fitted on [0, 1] floats


def test_float_images_with_a_range_of_their_own_keep_it(pixels):
    """Floats beyond [0, 1] (e.g. 0..16 digits) are scaled by the training range, also for later floats that
    happen to lie within [0, 1]."""
    X = pixels[0] / 255.0 * 16
    est = IMCSwAVClustering(
        n_clusters=3,
        backbone_width=4,
        n_prototypes=10,
        head_hidden_dim=8,
        max_epochs=1,
        batch_size=16,
        random_state=0,
    ).fit(X)
    assert est.inputs_.pixel_range == (float(X.min()), float(X.max()))
    dark = X[:4] / 16
    np.testing.assert_array_equal(
        est.predict_proba(dark), est.predict_proba(np.concatenate([dark, X[4:]]))[:4]
    )


def test_channels_last_images_are_not_copied(tiny, rgb_images):
    images, _ = rgb_images  # (N, H, W, C) uint8
    est = tiny()
    prepared = InputEncoder().fit_encode(images, est)
    assert prepared.values.shape == (24, 3, 12, 12)
    assert prepared.values.data_ptr() == images.__array_interface__["data"][0]
    channels_first = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    a, b = tiny().fit(images), tiny().fit(channels_first)
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_feature_vectors_with_a_large_offset_cluster_like_the_plain_ones():
    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(3) * 6, 20, axis=0)
    X = np.concatenate([centres, np.zeros((60, 3))], axis=1) + rng.normal(size=(60, 6))
    params = dict(
        n_clusters=3,
        backbone_width=4,
        n_prototypes=10,
        head_hidden_dim=16,
        max_epochs=3,
        batch_size=20,
        random_state=0,
    )
    plain, offset = IMCSwAVClustering(**params).fit(X), IMCSwAVClustering(**params).fit(X + 1e9)
    np.testing.assert_array_equal(plain.labels_, offset.labels_)
    np.testing.assert_allclose(plain.transform(X), offset.transform(X + 1e9), rtol=1e-4, atol=1e-4)


def test_features_beyond_float32_are_an_error_before_training():
    X = np.random.default_rng(0).normal(size=(20, 4))
    X[3, 1] = 1e39
    est = IMCSwAVClustering(n_clusters=2, max_epochs=1)
    with pytest.raises(ValueError, match="float32 range"):
        est.fit(X)
    assert not hasattr(est, "model_")


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda images: images, ValueError, "backbone='mlp' takes plain feature vectors"),
        (lambda images: Stream(images[:0]), ValueError, "empty"),
        (
            lambda images: DataLoader(TensorDataset(torch.zeros(0, 3, 4, 4)), batch_size=2),
            ValueError,
            "no batch",
        ),
        (
            lambda images: DataLoader([["a", 0]] * 4, batch_size=2, collate_fn=lambda b: b),
            TypeError,
            "tensors",
        ),
        (lambda images: images.astype(object), TypeError, "numeric"),
        (lambda images: np.ma.masked_array(images), TypeError, "masked array"),
        (lambda images: torch.empty(images.shape, device="meta"), TypeError, "meta"),
    ],
)
def test_unsupported_containers_are_clear_errors(pixels, make, error, match):
    est = IMCSwAVClustering(n_clusters=3, backbone="mlp" if "mlp" in match else "auto", max_epochs=1)
    with pytest.raises(error, match=match):
        est.fit(make(pixels[0]))


@pytest.mark.parametrize("labels", [[0.0, np.nan, 1.0], [0, None, 1]])
def test_missing_labels_in_eval_set_or_score_are_an_error(fitted_on_uint8, pixels, labels):
    X = pixels[0][:3]
    with pytest.raises(ValueError, match="missing"):
        fitted_on_uint8.score(X, np.array(labels, dtype=object if None in labels else float))
    est = IMCSwAVClustering(n_clusters=3, backbone_width=4, n_prototypes=10, head_hidden_dim=8, max_epochs=1)
    with pytest.raises(ValueError, match="missing"):
        est.fit(pixels[0], eval_set=(X, np.array(labels, dtype=object if None in labels else float)))
    assert not hasattr(est, "model_")


def test_parameters_changed_after_fit_never_change_the_fitted_model(fitted_on_uint8, pixels, tmp_path):
    import copy
    import pickle

    est = copy.deepcopy(fitted_on_uint8)
    expected = est.predict_proba(pixels[0])
    est.set_params(n_clusters=7, backbone_width=16, n_prototypes=50, large_crop_size=5)
    np.testing.assert_array_equal(est.predict_proba(pixels[0]), expected)  # the fitted network, 3 clusters
    est.save(tmp_path / "m.cpt")
    for copy_ in (IMCSwAVClustering.load(tmp_path / "m.cpt"), pickle.loads(pickle.dumps(est))):
        assert copy_.n_clusters == 7 and copy_.architecture_["n_clusters"] == 3
        np.testing.assert_array_equal(copy_.predict_proba(pixels[0]), expected)
    est.set_params(backbone="mlp", image_shape=(12, 36))  # the input encoder keeps the fitted reading of X
    np.testing.assert_array_equal(est.predict_proba(pixels[0]), expected)
    est.save(tmp_path / "m.cpt")
    np.testing.assert_array_equal(
        IMCSwAVClustering.load(tmp_path / "m.cpt").predict_proba(pixels[0]), expected
    )
    est.set_params(backbone="auto", image_shape=None)
    with pytest.raises(ValueError, match="architecture"):
        est.set_params(warm_start=True, max_epochs=3).fit(pixels[0])
    np.testing.assert_array_equal(est.predict_proba(pixels[0]), expected)
    est.set_params(batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        est.predict(pixels[0])
