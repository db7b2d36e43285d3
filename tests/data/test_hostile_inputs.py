"""Inputs a hostile user tries: ragged lists, images whose channel axis is ambiguous, one image passed to
predict, floats on no known scale, degenerate parameters, a single file name where a list goes, a
TensorBoard folder that is a file, the dropped-samples advice under torchrun, PIL's own warnings, and
configuration warnings once per process and kind."""

import warnings

import numpy as np
import pytest
from PIL import Image

from imc_cluster import ConfigurationWarning, IMCSwAVClustering, TensorBoard, iter_image_batches
from imc_cluster.data.arrays import AmbiguousImagesWarning
from imc_cluster.estimator import params as parameters

TINY = dict(
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=12,
    max_epochs=1,
    warmup_updates=1,
    bn_recalibration_batches=1,
    random_state=0,
)


@pytest.fixture(autouse=True)
def _every_warning_anew():
    parameters._WARNED.clear()


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).integers(0, 256, (24, 10, 10, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def fitted(rgb):
    return IMCSwAVClustering(3, **TINY).fit(rgb)


@pytest.mark.parametrize(
    "X",
    [
        lambda rgb: [rgb[0], rgb[1][:8]],
        lambda rgb: [rgb[0].tolist(), rgb[1][:, :9].tolist()],
        lambda rgb: (rgb[0], rgb[1, ..., :1]),
        lambda rgb: [list(range(5)), list(range(4))],
    ],
    ids=["arrays", "nested lists", "tuple of arrays", "vectors"],
)
def test_a_ragged_list_is_our_clear_error(rgb, X):
    with pytest.raises(ValueError, match="different shapes"):
        IMCSwAVClustering(3, **TINY).fit(X(rgb))


def test_a_list_of_equal_images_still_fits(rgb):
    IMCSwAVClustering(3, **TINY).fit(list(rgb))


@pytest.mark.parametrize("shape", [(24, 1, 10, 3), (24, 3, 10, 1), (24, 3, 10, 3), (24, 1, 10, 1)])
def test_an_ambiguous_channel_axis_warns_and_image_shape_decides(shape):
    X = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with pytest.warns(AmbiguousImagesWarning, match=r"image_shape=\("):
        est = IMCSwAVClustering(3, **TINY).fit(X)
    assert est.input_shape_ == shape[1:]  # read channels-first
    _, c, h, w = shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousImagesWarning)
        as_last = IMCSwAVClustering(3, **TINY, image_shape=(c, h, w)).fit(X)  # (H, W, C) of channels-last
        assert as_last.input_shape_ == (w, c, h)
        np.testing.assert_array_equal(as_last.predict(X), as_last.labels_)  # predict takes the fitted reading
        as_first = IMCSwAVClustering(3, **TINY, image_shape=(h, w, c)).fit(X)
        assert as_first.input_shape_ == (c, h, w)


def test_one_image_passed_to_predict_says_how_to_pass_it(fitted, rgb):
    for image in (rgb[0], rgb[0].transpose(2, 0, 1)):
        with pytest.raises(
            ValueError, match=r"one image of the fitted shape: pass a batch of one, X\[None\]"
        ):
            fitted.predict(image)
    assert fitted.predict(rgb[0][None]).shape == (1,)


@pytest.mark.parametrize("high", [2.0, 5.0, 12.0])
def test_floats_on_no_known_scale_are_refused_for_a_model_fitted_on_uint8(fitted, high):
    X = np.random.default_rng(0).random((4, 10, 10, 3)) * high
    with pytest.raises(ValueError, match=r"neither in \[0, 1\].*\[0, 255\]"):
        fitted.predict(X)


def test_floats_on_the_fitted_scale_and_in_unit_range_are_read(fitted, rgb):
    np.testing.assert_array_equal(fitted.predict(rgb.astype(np.float32)), fitted.predict(rgb))
    np.testing.assert_array_equal(fitted.predict(rgb / 255.0), fitted.predict(rgb))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_clusters": True}, "n_clusters"),
        ({"n_clusters": np.bool_(True)}, "n_clusters"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"backbone_width": True}, "not a bool"),
        ({"max_epochs": True}, "not a bool"),
        ({"learning_rate": True}, "not a bool"),
        ({"lr_milestones": (5, 2)}, r"increasing order.*did you mean \[2, 5\]"),
        ({"lr_milestones": np.array([3, 1])}, "increasing order"),
        ({"random_state": True}, "not a bool"),
        ({"normalization": ((True, 0.5, 0.5), (0.2, 0.2, 0.2))}, "normalization"),
        ({"device": True}, "device"),
    ],
)
def test_degenerate_parameters_are_refused(rgb, params, message):
    with pytest.raises(ValueError, match=message):
        IMCSwAVClustering(**{"n_clusters": 3, **TINY, **params}).fit(rgb)


@pytest.mark.parametrize("n_clusters", [1, np.int64(1)])
def test_one_cluster_is_allowed_with_a_warning(rgb, n_clusters):
    with pytest.warns(ConfigurationWarning, match="n_clusters=1"):
        est = IMCSwAVClustering(n_clusters, **TINY).fit(rgb)
    assert (est.labels_ == 0).all() and np.allclose(est.predict_proba(rgb), 1.0)
    assert est.score(rgb) == pytest.approx(0.0, abs=1e-9)


def test_a_fraction_or_a_decimal_where_a_float_goes_is_our_clear_error(rgb):
    from decimal import Decimal
    from fractions import Fraction

    with pytest.raises(TypeError, match="learning_rate must be an int or a float"):
        IMCSwAVClustering(3, **{**TINY, "learning_rate": Fraction(1, 2000)}).fit(rgb)
    with pytest.raises((TypeError, ValueError), match="temperature"):
        IMCSwAVClustering(3, **{**TINY, "temperature": Decimal("0.1")}).fit(rgb)


def test_tensorboard_purge_is_a_bool(tmp_path):
    pytest.importorskip("tensorboard")
    with pytest.raises(TypeError, match="purge must be True or False"):
        TensorBoard(tmp_path, purge="no")
    TensorBoard(tmp_path, purge=np.bool_(False))


def test_repeated_milestones_are_allowed(rgb):
    IMCSwAVClustering(3, **{**TINY, "lr_milestones": (1, 1)}).fit(rgb)


def test_small_crops_larger_than_the_large_ones_warn(rgb):
    with pytest.warns(ConfigurationWarning, match="small crops"):
        IMCSwAVClustering(3, **TINY, large_crop_size=4, small_crop_size=8).fit(rgb)


@pytest.mark.parametrize("files", ["a.png", b"a.png"])
def test_one_file_name_where_a_list_goes_is_a_type_error(tmp_path, files):
    with pytest.raises(TypeError, match=r"a list of file names"):
        list(iter_image_batches(tmp_path, files=files))


def test_a_path_where_a_list_goes_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"a list of file names"):
        list(iter_image_batches(tmp_path, files=tmp_path / "a.png"))


def test_a_tensorboard_folder_that_cannot_be_one_fails_at_once(tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        TensorBoard(tmp_path / "file")
    with pytest.raises(ValueError, match="is under the file"):
        TensorBoard(tmp_path / "file" / "runs")
    with pytest.raises(TypeError, match="log_dir must be a path"):
        TensorBoard(3)
    TensorBoard(tmp_path / "new" / "runs")  # a folder to be made


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 8])
def test_the_dropped_samples_advice_works_and_counts_the_ranks(ranks):
    """Over many sample counts and batch sizes: every batch size the warning suggests is a multiple of the
    processes, at least 2, no larger than the one given, and drops at most a tenth of the samples."""
    advised = 0
    for n_samples in range(2, 160, 3):
        for batch_size in range(2, 70, 5):
            params = {
                **IMCSwAVClustering().get_params(),
                "batch_size": batch_size,
                "warmup_updates": 0,
                "n_prototypes": 2,
                "n_clusters": 2,
            }
            parameters._WARNED.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                parameters.warn_about_run(params, n_samples, ranks=ranks)
            for warning in caught:
                text = str(warning.message)
                if "e.g. batch_size=" in text:
                    advice = int(text.split("e.g. batch_size=")[1].split()[0])
                    assert advice % ranks == 0 and 2 <= advice <= min(batch_size, n_samples), text
                    assert 10 * (n_samples % advice) <= n_samples, text
                    advised += 1
    assert advised > 50


def test_configuration_warnings_come_once_per_process_and_kind(rgb):
    params = {**TINY, "n_prototypes": 100}  # more prototypes than the 24 samples
    with pytest.warns(ConfigurationWarning, match="n_prototypes"):
        IMCSwAVClustering(3, **params).fit(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigurationWarning)
        IMCSwAVClustering(3, **params).fit(rgb)  # the same kind again: silent
    with pytest.warns(ConfigurationWarning, match="batch_size"):
        IMCSwAVClustering(3, **{**params, "batch_size": 20}).fit(rgb)  # another kind


def test_an_image_over_pils_limit_is_named_once_without_pils_warning(tmp_path, monkeypatch):
    from imc_cluster import load_image_folder

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path, on_error="skip")
    assert [f.path for f in data.failures] == ["big.png"] and "pixel limit" in data.failures[0].error
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
