"""Bad input gets a ValueError/TypeError from our code that names the problem, and a failed fit leaves a
fitted estimator untouched."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError


def images(n=12, shape=(8, 8, 3), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, size=(n, *shape)).astype(dtype)


def with_nan():
    X = images(dtype=np.float32) / 255
    X[3, 2, 2, 0] = np.nan
    return X


CASES = [
    ("NaN pixels", dict(), lambda: with_nan(), ValueError, "NaN"),
    ("infinite features", dict(), lambda: np.array([[1.0, np.inf]] * 12), ValueError, "infinity"),
    ("1-D data", dict(), lambda: np.arange(12.0), ValueError, "2D array"),
    ("5-D data", dict(), lambda: np.zeros((12, 2, 8, 8, 3)), ValueError, "dimensions"),
    ("two channels", dict(), lambda: images(shape=(8, 8, 2)), ValueError, "1 or 3 channels"),
    ("image_shape mismatch", dict(image_shape=(5, 5)), lambda: np.zeros((12, 64)), ValueError,
     "image_shape"),
    ("image_shape with 4 channels", dict(image_shape=(4, 4, 4)), lambda: np.zeros((12, 64)), ValueError,
     "channels"),
    ("empty data", dict(), lambda: np.zeros((0, 5)), ValueError, "0 sample"),
    ("fewer samples than clusters", dict(n_clusters=20), lambda: images(), ValueError, "n_clusters=20"),
    ("crop larger than image", dict(large_crop_size=9), lambda: images(), ValueError, "large_crop_size"),
    ("strings", dict(), lambda: np.array([["a", "b"]] * 12), ValueError, "numeric|string"),
    ("resnet without images", dict(backbone="resnet18"), lambda: np.zeros((12, 5)), ValueError,
     "needs images"),
    ("mlp with image_shape", dict(backbone="mlp", image_shape=(2, 2)), lambda: np.zeros((12, 4)),
     ValueError, "mlp"),
    ("unknown backbone", dict(backbone="vgg"), lambda: images(), ValueError, "backbone"),
    ("bad crop scale", dict(small_crop_scale=(0.5, 0.1)), lambda: images(), ValueError, "small_crop_scale"),
    ("bad jitter", dict(color_jitter=(0.4, 0.4, 0.4, 0.9)), lambda: images(), ValueError, "color_jitter"),
    ("bad device", dict(device="tpu"), lambda: images(), ValueError, "device"),
]


@pytest.mark.parametrize("name, params, make_X, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_fit_input(tiny, name, params, make_X, error, message):
    with pytest.raises(error, match=message):
        tiny(**params).fit(make_X())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda(tiny):
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny(device="cuda").fit(images())


def test_predict_before_fit(tiny):
    with pytest.raises(NotFittedError):
        tiny().predict(images())


def test_predict_on_differently_shaped_data(tiny):
    est = tiny().fit(images())
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        est.predict(images(shape=(10, 10, 3)))
    with pytest.raises(ValueError, match="features"):
        est.predict(np.zeros((4, 7)))


def test_eval_set_mismatch(tiny):
    X = images()
    with pytest.raises(ValueError, match="one label per sample"):
        tiny().fit(X, eval_set=(X, np.zeros(5)))
    with pytest.raises(ValueError, match="pair"):
        tiny().fit(X, eval_set=X)


def test_failed_fit_keeps_the_fitted_state(tiny):
    X = images()
    est = tiny().fit(X)
    before = est.predict(X)
    state = {k: v.clone() for k, v in est.model_.state_dict().items()}
    attributes = set(vars(est))
    with pytest.raises(ValueError):
        est.fit(images(shape=(6, 6, 3)), eval_set=(X, np.zeros(3)))
    assert set(vars(est)) == attributes and est.input_shape_ == (3, 8, 8)
    np.testing.assert_array_equal(est.predict(X), before)
    for key, value in est.model_.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_batch_larger_than_data_still_trains(tiny):
    est = tiny(batch_size=500).fit(images())
    assert est.history_[0]["updates"] == 1 and est.labels_.shape == (12,)
