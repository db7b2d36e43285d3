"""A frozen encoder's model predicts from its feature store: the photos of its fit, and any it has seen,
without running the encoder again, in the fit's precision, so that ``predict`` gives ``labels_``, and a
checkpoint loaded elsewhere (empty cache) predicts the same."""

import shutil

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.core.cache import clear_cache
from imc_cluster.core.halves import from_scaled_half, to_scaled_half


@pytest.fixture(params=["auto", "float32"])
def fitted(request, frozen_fit) -> IMCSwAVClustering:
    """A frozen fit on the photos in each precision."""
    return frozen_fit(precision=request.param)


@pytest.fixture
def no_encoder(monkeypatch):
    """``no_encoder(est)``: the estimator's encoder raises when run."""

    def forbid(est):
        def run(*args, **kwargs):
            raise AssertionError("the encoder ran")

        monkeypatch.setattr(est.model_.encoder, "forward", run)

    return forbid


def test_predict_gives_labels_without_the_encoder(fitted, frozen_photos, no_encoder):
    no_encoder(fitted)
    np.testing.assert_array_equal(fitted.predict(frozen_photos[1]), fitted.labels_)
    order = np.random.default_rng(1).permutation(12)[:7]
    np.testing.assert_array_equal(fitted.predict(frozen_photos[1][order]), fitted.labels_[order])
    assert fitted.predict_proba(frozen_photos[1][:1]).shape == (1, 3)


def test_features_are_the_scaled_halves_the_fit_kept(fitted, frozen_photos):
    features = fitted.transform(frozen_photos[1])
    assert features.dtype == np.float32
    kept = from_scaled_half(to_scaled_half(torch.from_numpy(features))).numpy()
    np.testing.assert_array_equal(kept, features)


def test_new_photos_run_the_encoder_once(fitted, frozen_photos):
    new = np.random.default_rng(5).integers(0, 256, (4, *frozen_photos[1].shape[1:]), dtype=np.uint8)
    first = fitted.predict_proba(new)
    encoder = fitted.model_.encoder
    calls = []
    hook = encoder.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    np.testing.assert_array_equal(
        fitted.predict_proba(np.concatenate([frozen_photos[1], new])[::-1]),
        np.concatenate([fitted.predict_proba(frozen_photos[1]), first])[::-1],
    )
    hook.remove()
    assert calls == []


def test_a_loaded_checkpoint_with_an_empty_cache_predicts_the_same(fitted, frozen_photos, tmp_path):
    fitted.save(tmp_path / "model.cpt")
    loaded = IMCSwAVClustering.load(tmp_path / "model.cpt").set_params(cache_dir=str(tmp_path / "elsewhere"))
    np.testing.assert_array_equal(
        loaded.predict_proba(frozen_photos[1]), fitted.predict_proba(frozen_photos[1])
    )
    assert any((tmp_path / "elsewhere" / "features").iterdir())


def test_a_cleared_cache_gives_the_same_predictions(fitted, frozen_photos):
    before = fitted.predict_proba(frozen_photos[1])
    clear_cache(fitted.cache_dir)
    np.testing.assert_array_equal(fitted.predict_proba(frozen_photos[1]), before)
    np.testing.assert_array_equal(fitted.predict(frozen_photos[1]), fitted.labels_)


def test_random_frozen_encoders_of_other_seeds_share_no_features(frozen_fit, frozen_photos):
    first, second = (frozen_fit(weights=None, freeze_encoder=True, random_state=seed) for seed in (0, 1))
    assert first.cache_dir == second.cache_dir
    features = [est.transform(frozen_photos[1]) for est in (first, second)]
    assert not np.allclose(features[0], features[1])
    for est, kept in zip((first, second), features):
        with torch.no_grad():
            computed = est.model_.encoder(
                est.inputs_.network_input(torch.from_numpy(frozen_photos[1]).permute(0, 3, 1, 2))
            )
        np.testing.assert_allclose(kept, computed.numpy(), rtol=0.02, atol=0.02 * np.abs(kept).max())


@pytest.mark.parametrize("where", ["cache folder", "store"])
def test_a_cache_that_cannot_be_written_still_predicts(frozen_fit, frozen_photos, tmp_path, where):
    fitted = frozen_fit()
    expected = fitted.predict_proba(frozen_photos[1])
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    if where == "cache folder":  # no cache folder can be made under a file
        fitted.set_params(cache_dir=str(blocker / "cache"))
    else:  # the store's folder is a file: no shard can be written
        store = next((tmp_path / "cache" / "features").glob("encoder-*"))
        shutil.rmtree(store)
        store.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="could not be kept"):
        np.testing.assert_array_equal(fitted.predict_proba(frozen_photos[1]), expected)
