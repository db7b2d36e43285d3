"""scikit-learn's common estimator checks on two small configurations, and feature names and set_output."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_get_feature_names_out_error, check_global_output_transform_pandas,
    check_global_set_output_transform_polars, check_set_output_transform, check_set_output_transform_pandas,
    check_set_output_transform_polars, check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas, parametrize_with_checks)

from imc_cluster import IMCSwAVClustering

SMALL = dict(backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16, batch_size=16,
             max_epochs=15, warmup_updates=2, bn_recalibration_batches=2, random_state=0)

#: the MLP backbone on plain 2-D data
VECTORS = IMCSwAVClustering(**SMALL)
#: a ResNet reading every row as a one-pixel-high grey image
IMAGES = IMCSwAVClustering(image_shape=(1, -1), **SMALL)

#: checks waived for the image configuration, with the reason (the vector configuration waives none)
IMAGE_WAIVERS = {
    "check_clustering": (
        "expects ARI > 0.4 on 2-feature Gaussian blobs; read as 1x2-pixel images, crops and colour jitter "
        "(which average and rescale the two 'pixels') erase the only signal, so the image pipeline cannot "
        "cluster them. The same check passes with the MLP backbone, which is what 2-D data gets by default."
    ),
    "check_methods_subset_invariance": (
        "float32 convolutions give results that differ in the last bits with the batch size (oneDNN picks "
        "kernels per shape), up to ~1e-5 relative on near-zero features, beyond the check's rtol=1e-4 "
        "there; cluster labels agree. The MLP configuration passes it."
    ),
}


def expected_failures(estimator) -> dict[str, str]:
    return IMAGE_WAIVERS if estimator.image_shape is not None else {}


@parametrize_with_checks([VECTORS, IMAGES], expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ feature names and set_output

#: scikit-learn's checks of get_feature_names_out and set_output, which parametrize_with_checks leaves out
#: (its own test suite runs them on every transformer); the pandas and polars ones skip themselves when
#: the library is missing
OUTPUT_CHECKS = [check_get_feature_names_out_error, check_transformer_get_feature_names_out,
                 check_transformer_get_feature_names_out_pandas, check_set_output_transform,
                 check_set_output_transform_pandas, check_global_output_transform_pandas,
                 check_set_output_transform_polars, check_global_set_output_transform_polars]


@pytest.mark.parametrize("check", OUTPUT_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("estimator", [VECTORS, IMAGES], ids=["vectors", "images"])
def test_feature_names_out_and_set_output_checks(estimator, check):
    check(type(estimator).__name__, clone(estimator).set_params(max_epochs=2))


def names(n: int) -> list[str]:
    return [f"imcswavclustering{i}" for i in range(n)]


def test_feature_names_out_are_the_encoder_features(tmp_path):
    X, _ = make_blobs(40, n_features=5, random_state=0)
    est = clone(VECTORS).set_params(max_epochs=2)
    with pytest.raises(NotFittedError):
        est.get_feature_names_out()
    features = est.fit_transform(X)
    out = est.get_feature_names_out()
    assert out.dtype == object and list(out) == names(est.model_.encoder.out_features)
    assert len(out) == features.shape[1]
    assert list(est.get_feature_names_out([f"x{i}" for i in range(5)])) == list(out)
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out(["x0", "x1"])
    est.save(tmp_path / "model.cpt")
    assert list(IMCSwAVClustering.load(tmp_path / "model.cpt").get_feature_names_out()) == list(out)
    images = np.random.default_rng(0).integers(0, 255, (20, 6, 6, 3), dtype=np.uint8)
    est = clone(IMAGES).set_params(image_shape=None, max_epochs=1).fit(images)
    assert list(est.get_feature_names_out()) == names(est.transform(images).shape[1])


def test_pipeline_feature_names_out():
    X, _ = make_blobs(40, n_features=5, random_state=0)
    pipe = make_pipeline(StandardScaler(), clone(VECTORS).set_params(max_epochs=2))
    features = pipe.fit_transform(X)
    assert list(pipe.get_feature_names_out()) == names(features.shape[1])


def test_pandas_output_equals_the_numpy_one():
    pd = pytest.importorskip("pandas", reason="pandas is not installed: set_output('pandas') needs it")
    X, _ = make_blobs(40, n_features=5, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)], index=np.arange(100, 140))
    numpy_est = clone(VECTORS).set_params(max_epochs=2)
    expected = numpy_est.fit_transform(X)
    est = clone(VECTORS).set_params(max_epochs=2).set_output(transform="pandas")
    for out in (est.fit_transform(frame), est.transform(frame)):
        assert isinstance(out, pd.DataFrame) and list(out.columns) == names(expected.shape[1])
        assert out.index.equals(frame.index) and (out.dtypes == np.float32).all()
        np.testing.assert_array_equal(out.to_numpy(), expected)
    assert list(est.get_feature_names_out(frame.columns)) == list(out.columns)
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out([f"g{i}" for i in range(5)])
    assert isinstance(est.set_output(transform="default").transform(frame), np.ndarray)
    # images in a pipeline: the index of the rows, the encoder's names as columns
    images = np.random.default_rng(0).integers(0, 255, (20, 36), dtype=np.uint8)
    pipe = make_pipeline(clone(IMAGES).set_params(image_shape=(6, 6), max_epochs=1))
    pipe.set_output(transform="pandas")
    out = pipe.fit_transform(images)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(pipe.get_feature_names_out())
    np.testing.assert_array_equal(out.to_numpy(), pipe.set_output(transform="default").transform(images))
    np.testing.assert_array_equal(pipe.predict(images), pipe[-1].labels_)


def test_polars_output():
    pl = pytest.importorskip("polars", reason="polars is not installed: set_output('polars') needs it")
    X, _ = make_blobs(40, n_features=5, random_state=0)
    est = clone(VECTORS).set_params(max_epochs=2).set_output(transform="polars")
    out = est.fit_transform(X)
    assert isinstance(out, pl.DataFrame) and out.columns == names(est.model_.encoder.out_features)
    np.testing.assert_array_equal(out.to_numpy(), est.set_output(transform="default").transform(X))


def test_feature_names_in_follow_the_last_fit():
    pd = pytest.importorskip("pandas", reason="pandas is not installed: named columns need it")
    X, _ = make_blobs(20, n_features=36, random_state=0)
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(36)])
    est = clone(IMAGES).set_params(image_shape=(6, 6), max_epochs=1).fit(frame)
    assert list(est.feature_names_in_) == list(frame.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "fitted without feature names" warning
        np.testing.assert_array_equal(est.predict(frame), est.labels_)
    est.fit(X.reshape(20, 6, 6))  # images as a 3-D array: no names any more
    assert not hasattr(est, "feature_names_in_") and est.n_features_in_ == 36
