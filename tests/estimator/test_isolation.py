"""A fit depends on its own parameters and data only: fits in several threads equal the same fits alone,
fit works under torch.no_grad() and torch.inference_mode(), and the caller's random and gradient state
is left as it found it."""

import random

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed

from imc_cluster import IMCSwAVClustering

PARAMS = dict(
    n_clusters=3,
    image_shape=(8, 8),
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=40,
    max_epochs=2,
    warmup_updates=1,
    bn_recalibration_batches=1,
)


def fitted(X, seed):
    est = IMCSwAVClustering(**PARAMS, random_state=seed).fit(X)
    return est.predict_proba(X), {k: v.clone() for k, v in est.model_.state_dict().items()}


def test_fits_in_threads_equal_the_same_fits_alone(digits):
    alone = [fitted(digits, seed) for seed in range(3)]
    together = Parallel(n_jobs=3, backend="threading")(delayed(fitted)(digits, seed) for seed in range(3))
    for (proba, weights), (proba_t, weights_t) in zip(alone, together):
        np.testing.assert_array_equal(proba, proba_t)
        assert all(torch.equal(weights[k], weights_t[k]) for k in weights)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_fit_works_under_a_gradient_free_mode_and_leaves_it_on(digits, mode):
    expected, _ = fitted(digits, 0)
    with mode():
        est = IMCSwAVClustering(**PARAMS, random_state=0).fit(digits)
        assert not torch.is_grad_enabled()
        proba = est.predict_proba(digits)
    np.testing.assert_array_equal(proba, expected)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("inputs", ["array", "inference tensor"])
def test_fit_takes_tensors_made_in_inference_mode(digits, inputs):
    X = digits
    if inputs == "inference tensor":
        with torch.inference_mode():
            X = torch.from_numpy(digits).float()
    IMCSwAVClustering(**PARAMS, random_state=0).fit(X)


def test_fit_leaves_the_callers_random_state_as_it_found_it(digits):
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002 (the global generator is what is tested)
    random.seed(7)
    legacy_numpy = np.random.get_state()[1].copy()  # noqa: NPY002 (the global generator is what is tested)
    states = torch.get_rng_state(), legacy_numpy, random.getstate()
    IMCSwAVClustering(**PARAMS, random_state=0).fit(digits).predict(digits)
    assert torch.equal(states[0], torch.get_rng_state())
    np.testing.assert_array_equal(states[1], np.random.get_state()[1])  # noqa: NPY002
    assert states[2] == random.getstate()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_the_random_state_of_the_caller_does_not_change_a_fit(digits):
    torch.manual_seed(1)
    first, _ = fitted(digits, 0)
    torch.manual_seed(2)
    second, _ = fitted(digits, 0)
    np.testing.assert_array_equal(first, second)
