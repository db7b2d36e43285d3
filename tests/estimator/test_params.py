"""The estimator's parameters: the checks of the structured ones before any work, and the warnings of fit
about wasteful configurations."""

import re
import warnings

import pytest
from sklearn.datasets import make_blobs

from imc_cluster import ConfigurationWarning, IMCSwAVClustering

# ------------------------------------------------------------------ checks


def test_parameters_with_structure_are_checked_before_any_work(rgb_images, monkeypatch):
    pixels = rgb_images
    from imc_cluster.data import encoder as inputs

    def no_work(*args, **kwargs):
        raise AssertionError("the data were read before the parameters were checked")

    monkeypatch.setattr(inputs.InputEncoder, "fit_encode", no_work)
    for params, match in [
        ({"image_shape": (8, "a")}, "image_shape"),
        ({"image_shape": (0, 8)}, "image_shape"),
        ({"large_crop_size": (5, 0)}, "large_crop_size"),
        ({"small_crop_size": (1, 2, 3)}, "small_crop_size"),
        ({"normalization": ([0.5], [0.0])}, "normalization"),
        ({"color_jitter": (0.4, 0.4, 0.4)}, "color_jitter"),
        ({"lr_milestones": (10, -1)}, "lr_milestones"),
    ]:
        with pytest.raises(ValueError, match=match):
            IMCSwAVClustering(**params).fit(pixels[0])
    with pytest.raises(ValueError, match="n_large_crops \\+ n_small_crops"):
        IMCSwAVClustering(n_large_crops=1, n_small_crops=0).fit(pixels[0])
    for callbacks in (["not callable"], print):
        with pytest.raises(TypeError, match="callbacks"):
            IMCSwAVClustering().fit(pixels[0], callbacks=callbacks)


@pytest.mark.parametrize("n_heads", [0, -1, 1.5, True, "2", None])
def test_a_head_count_that_is_not_a_positive_integer_is_refused(n_heads, rgb_images, monkeypatch):
    from imc_cluster.data import encoder as inputs

    def no_work(*args, **kwargs):
        raise AssertionError("the data were read before the parameters were checked")

    monkeypatch.setattr(inputs.InputEncoder, "fit_encode", no_work)
    with pytest.raises(ValueError, match="n_heads"):
        IMCSwAVClustering(n_heads=n_heads).fit(rgb_images[0])


# ------------------------------------------------------------------ configuration warnings


def configuration_warnings(est, X, **fit_params) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, **fit_params)
    return [w for w in caught if issubclass(w.category, ConfigurationWarning)]


WARMUP = r"warmup_updates=5 exceeds the updates of the whole run, 4 \(max_epochs=2 x 2 per epoch"


PROTOTYPES = r"n_prototypes=33 exceeds the 32 samples"


@pytest.mark.parametrize(
    "n_samples, params, expected",
    [
        (32, dict(warmup_updates=4), []),  # 2 epochs x 2 updates: the warm-up just ends
        (32, dict(warmup_updates=5), [WARMUP]),
        (32, dict(n_prototypes=32), []),
        (32, dict(n_prototypes=33), [PROTOTYPES]),
        (32, dict(warmup_updates=5, n_prototypes=33), [WARMUP, PROTOTYPES]),
        (30, dict(batch_size=9), []),  # 3 of 30 left out: 10%
        (
            30,
            dict(batch_size=8),
            [r"batch_size=8 leaves 6 of the 30 samples \(20%\).*batch_size=7 leaves 2 out"],
        ),
        (
            300,
            dict(batch_size=256, warmup_updates=0),
            [r"batch_size=256 leaves 44 of the 300 samples \(15%\)"],
        ),
        (20, dict(batch_size=256), []),  # the batch is capped at the 20 samples
    ],
)
def test_configuration_warnings_exactly_when_due(tiny, n_samples, params, expected):
    X, _ = make_blobs(n_samples, n_features=4, random_state=0)
    caught = configuration_warnings(tiny(**params), X)  # 2 epochs, one warning of each kind
    assert len(caught) == len(expected), [str(w.message) for w in caught]
    for warning, pattern in zip(caught, expected):
        assert warning.filename == __file__  # the user's call of fit
        assert re.search(pattern, str(warning.message)), str(warning.message)


def test_a_fit_that_fails_its_checks_does_not_warn(tiny):
    X, _ = make_blobs(40, n_features=4, random_state=0)  # 8 of 40 left out: it would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigurationWarning)
        with pytest.raises(ValueError, match="eval_set"):
            tiny().fit(X, eval_set="validation")
    assert len(configuration_warnings(tiny(), X)) == 1
