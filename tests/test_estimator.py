"""The estimator end to end: inputs, outputs, determinism, training schedule, and scikit-learn tools."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchvision.datasets import FakeData, ImageFolder

from imc_cluster import cluster_accuracy, evaluate_clustering, fitting
from imc_cluster.inputs import InputEncoder
from imc_cluster.training import LOSS_TERMS


def test_accepts_every_image_layout(tiny, rgb_images):
    images, _ = rgb_images
    layouts = {
        "nhwc uint8": images,
        "nchw uint8": images.transpose(0, 3, 1, 2),
        "nhwc float": images / 255.0,
        "flattened": images.reshape(24, -1),
    }
    labels = {}
    for name, X in layouts.items():
        shape = (12, 12, 3) if name == "flattened" else None
        est = tiny(image_shape=shape).fit(X)
        assert est.input_shape_ == (3, 12, 12), name
        labels[name] = est.labels_
    # same pixels in every layout give the same model and clusters
    assert all(np.array_equal(labels["nhwc uint8"], other) for other in labels.values())


def test_grey_images_and_inferred_image_shape(tiny):
    rng = np.random.default_rng(1)
    X = rng.random((20, 64))
    a = tiny(image_shape=(8, -1)).fit(X)
    b = tiny().fit(X.reshape(20, 8, 8))
    assert a.input_shape_ == b.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(a.predict(X), b.predict(X.reshape(20, 8, 8)))


def test_feature_vectors_use_the_mlp(tiny):
    X, _ = make_blobs(40, n_features=5, random_state=0)
    est = tiny().fit(X)
    assert type(est.model_.encoder).__name__ == "MLPEncoder"
    assert est.transform(X).shape == (40, 32)


def test_torchvision_datasets(tiny, tmp_path):
    fake = FakeData(size=20, image_size=(3, 10, 10), num_classes=2, random_offset=3)
    est = tiny().fit(fake)
    assert est.input_shape_ == (3, 10, 10)
    assert est.predict(fake).shape == (20,)
    for index in range(6):
        folder = tmp_path / f"class{index % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.full((9, 9, 3), 40 * index, np.uint8)).save(folder / f"{index}.png")
    tree = ImageFolder(str(tmp_path))
    est = tiny(n_clusters=2, batch_size=4).fit(tree)
    assert est.input_shape_ == (3, 9, 9) and est.labels_.shape == (6,)


def test_outputs(tiny, rgb_images):
    images, labels = rgb_images
    est = tiny().fit(images)
    proba = est.predict_proba(images)
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(images), proba.argmax(axis=1))
    np.testing.assert_array_equal(est.labels_, est.predict(images))
    assert est.transform(images).shape == (24, 32) and est.transform(images).dtype == np.float32
    assert 0.0 <= est.score(images) <= math.log(3) + 1e-9
    assert est.score(images, labels) == cluster_accuracy(labels, est.predict(images))
    assert est.n_iter_ == 2 and len(est.history_) == 2
    assert set(LOSS_TERMS) | {"epoch", "lr", "seconds"} <= set(est.history_[0])
    assert est.device_ == torch.device("cpu")


def test_eval_set_metrics_in_history(tiny, rgb_images):
    images, labels = rgb_images
    est = tiny().fit(images, eval_set=(images[:12], labels[:12]))
    assert all({"acc", "nmi", "ari"} <= set(record) for record in est.history_)


@pytest.mark.parametrize("recalibration", [0, 1, 2, 50])
@pytest.mark.parametrize("backbone", ["auto", "mlp"])
def test_watching_a_fit_changes_nothing(tiny, rgb_images, recalibration, backbone):
    """With and without eval_set: bit-identical weights, buffers, labels and losses; and the last history
    record describes the model that fit returns."""
    images, labels = rgb_images
    X = images if backbone == "auto" else images.reshape(24, -1).astype(np.float32)
    params = dict(bn_recalibration_batches=recalibration, backbone=backbone, max_epochs=3, batch_size=8)
    plain = tiny(**params).fit(X)
    watched = tiny(**params).fit(X, eval_set=(X[::2], labels[::2]))
    for (name, a), b in zip(plain.model_.state_dict().items(), watched.model_.state_dict().values()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(plain.labels_, watched.labels_)
    assert [r["loss"] for r in plain.history_] == [r["loss"] for r in watched.history_]
    last = watched.history_[-1]
    expected = evaluate_clustering(labels[::2], watched.predict(X[::2]))
    assert {key: last[key] for key in expected} == expected


def test_deterministic_on_cpu(tiny, rgb_images):
    images, _ = rgb_images
    first, second = tiny().fit(images), tiny().fit(images)
    for a, b in zip(first.model_.state_dict().values(), second.model_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss"] for r in first.history_] == [r["loss"] for r in second.history_]
    other = tiny(random_state=1).fit(images)
    assert [r["loss"] for r in other.history_] != [r["loss"] for r in first.history_]


def test_verbose(tiny, rgb_images, capsys):
    images, _ = rgb_images
    tiny(verbose=0).fit(images)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    tiny(verbose=1).fit(images)
    assert "loss" in capsys.readouterr().err


def test_clusters_separable_blobs(tiny):
    X, y = make_blobs(150, centers=3, n_features=4, cluster_std=0.5, random_state=3)
    est = tiny(max_epochs=30, batch_size=32).fit(X)
    assert adjusted_rand_score(y, est.labels_) > 0.9


def test_pipeline_and_grid_search(tiny):
    X, y = make_blobs(90, centers=3, n_features=3, cluster_std=0.5, random_state=0)
    pipe = make_pipeline(StandardScaler(), tiny(max_epochs=30)).fit(X)
    assert adjusted_rand_score(y, pipe.predict(X)) > 0.8
    grid = {"n_clusters": [2, 3]}
    by_ari = GridSearchCV(tiny(max_epochs=30), grid, scoring="adjusted_rand_score", cv=2)
    assert by_ari.fit(X, y).best_params_ == {"n_clusters": 3}
    by_accuracy = GridSearchCV(tiny(max_epochs=30), grid, cv=2).fit(X, y)
    assert by_accuracy.best_params_ == {"n_clusters": 3}  # default score with y: clustering accuracy
    unsupervised = GridSearchCV(tiny(max_epochs=30), grid, cv=2).fit(X)
    assert np.isfinite(unsupervised.cv_results_["mean_test_score"]).all()


def test_head_mask_keeps_samples_out_of_the_head(tiny, rgb_images):
    images, _ = rgb_images
    mask = np.arange(24) % 3 == 0
    masked = tiny().fit(images, head_mask=mask)
    plain = tiny().fit(images)
    assert masked.history_[0]["mi"] != plain.history_[0]["mi"]
    assert masked.history_[0]["swav"] == plain.history_[0]["swav"]  # the encoder's first step is the same
    with pytest.raises(ValueError, match="head_mask"):
        tiny().fit(images, head_mask=np.ones(5, bool))
    with pytest.raises(ValueError, match="no sample"):
        tiny().fit(images, head_mask=np.zeros(24, bool))


def test_normalization_parameter_sets_the_pixel_statistics(tiny, rgb_images):
    images, _ = rgb_images
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    est = tiny(normalization=(mean, std), max_epochs=1).fit(images)
    assert (tuple(est.inputs_.pixel_mean), tuple(est.inputs_.pixel_std)) == (mean, std)
    computed = tiny(max_epochs=1).fit(images)
    np.testing.assert_allclose(computed.inputs_.pixel_mean, (images / 255.0).reshape(-1, 3).mean(axis=0), rtol=1e-6)
    assert computed.history_[0]["loss"] != est.history_[0]["loss"]
    for bad, match in [(((0.5,), (0.2,)), "channel"), (((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)), "std > 0"),
                       (((0.5, 0.5), (0.2, 0.2, 0.2)), "equally long"), ((0.5, 0.2), "pair"),
                       (((float("nan"),) * 3, (1.0,) * 3), "finite"), ("mean", "normalization")]:
        with pytest.raises(ValueError, match=match):
            tiny(normalization=bad).fit(images)


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


def test_precision_and_checkpointing_options(tiny, rgb_images):
    images, _ = rgb_images
    est = tiny(activation_checkpointing=True, precision="float32").fit(images)
    assert est.model_.encoder.checkpointing and fitting._training_dtype(est) is None
    bf16 = tiny(precision="bfloat16", device="cpu")
    bf16.device_ = torch.device("cpu")
    assert fitting._training_dtype(bf16) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        tiny(precision="float16").fit(images)
