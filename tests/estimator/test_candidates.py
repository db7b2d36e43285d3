"""A fit among candidate Ks on three well-separated blobs: it chooses K=3 without labels, ends as a fit of
that K (attributes, predictions, checkpoint), writes per-epoch checkpoints of every candidate that resume to
the same model, and continues the chosen K on a warm start."""

import json
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from imc_cluster.model.build import build_network

CANDIDATES = (2, 3, 5)
#: the settings that choose K=3 on the blobs (found for seeds 0..5 at 20 epochs; a few seconds on a CPU)
SETTINGS = dict(
    n_clusters=CANDIDATES,
    n_heads=3,
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=60,
    max_epochs=20,
    warmup_updates=2,
    learning_rate=2e-3,
    bn_recalibration_batches=2,
    random_state=0,
)
#: the epoch whose checkpoint is kept for the resume test
MIDWAY = 8


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, centers=3, n_features=8, center_box=(-10, 10), random_state=0)
    return X.astype(np.float32), y


class _KeepCheckpoint:
    """Copies the per-epoch checkpoint of epoch :data:`MIDWAY` aside."""

    def __init__(self, path, copy):
        self.path, self.copy = path, copy

    def __call__(self, estimator, record):
        if record["epoch"] == MIDWAY:
            shutil.copy(self.path, self.copy)


@pytest.fixture(scope="module")
def fit(blobs, tmp_path_factory):
    """The candidate fit, its final checkpoint and its checkpoint of epoch :data:`MIDWAY`."""
    folder = tmp_path_factory.mktemp("candidates")
    path, midway = folder / "model.cpt", folder / "midway.cpt"
    X, y = blobs
    est = IMCSwAVClustering(**SETTINGS, checkpoint_path=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, eval_set=(X, y), callbacks=[_KeepCheckpoint(path, midway)])
    return est, path, midway


def test_the_true_k_is_chosen_by_the_agreement_of_its_heads(fit):
    est = fit[0]
    assert est.n_clusters_ == 3
    assert sorted(est.k_scores_) == list(CANDIDATES)
    assert all(type(k) is int and type(s) is float and -1 <= s <= 1 for k, s in est.k_scores_.items())
    assert max(est.k_scores_, key=est.k_scores_.get) == 3
    assert est.get_params()["n_clusters"] == CANDIDATES  # as given


def test_the_fitted_model_is_one_of_the_chosen_k(fit, blobs):
    est, X = fit[0], blobs[0]
    assert est.architecture_["n_clusters"] == 3
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert np.array_equal(est.labels_, proba.argmax(axis=1)) and np.array_equal(est.predict(X), est.labels_)
    single = build_network({**est.architecture_, "n_clusters": 3})
    shapes = {name: tuple(value.shape) for name, value in single.state_dict().items()}
    assert {name: tuple(value.shape) for name, value in est.model_.state_dict().items()} == shapes
    assert 0 <= est.best_head_ < 3


def test_the_history_holds_every_candidate(fit):
    record = fit[0].history_[-1]
    assert [len(heads) for heads in record["mi_heads"]] == [3, 3, 3]
    for key in ("best_head", "confidence", "agreement", "clusters_used", "acc", "nmi", "ari"):
        assert isinstance(record[key], list) and len(record[key]) == 3, key
    assert record["acc"][1] > 0.9  # evaluated: K=3 on the blobs' own labels
    json.dumps(fit[0].history_)


def test_save_and_load_keep_the_choice_and_the_predictions(fit, blobs):
    est, path, _ = fit
    content = load_checkpoint(path)
    assert content["architecture"]["n_clusters"] == 3
    assert content["fitted"]["n_clusters_"] == 3 and content["fitted"]["k_scores_"] == est.k_scores_
    loaded = IMCSwAVClustering.load(path)
    assert loaded.n_clusters_ == 3 and loaded.k_scores_ == est.k_scores_
    assert loaded.get_params()["n_clusters"] == CANDIDATES
    assert np.array_equal(loaded.labels_, est.labels_)
    assert np.array_equal(loaded.predict_proba(blobs[0]), est.predict_proba(blobs[0]))
    copied = pickle.loads(pickle.dumps(est))
    assert copied.n_clusters_ == 3 and copied.k_scores_ == est.k_scores_


def _tampered(path, tmp_path, change):
    content = load_checkpoint(path)
    change(content)
    save_checkpoint(content, tmp_path / "t.cpt", "test")
    return tmp_path / "t.cpt"


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda c: c["fitted"].update(n_clusters_=5), "n_clusters_"),
        (lambda c: c["fitted"]["k_scores_"].update({3: float("nan")}), "not finite"),
        (lambda c: c["fitted"]["k_scores_"].update({5: 2.0}), "choose 5"),
        (lambda c: c["fitted"].update(k_scores_={3: 1.0}), "at least two candidates"),
        (lambda c: c["fitted"]["k_scores_"].update({1: 0.0}), "K < 2"),
        (lambda c: c["fitted"]["k_scores_"].update({"4": 0.0}), "must be int"),
        (lambda c: c["architecture"].update(n_clusters=[2, 3, 5]), "no labels_, n_clusters_ or k_scores_"),
        (lambda c: c["architecture"].update(n_clusters=[3, 2]), "increasing candidate"),
    ],
)
def test_a_tampered_choice_is_refused(fit, tmp_path, change, words):
    with pytest.raises(CheckpointError, match=words):
        IMCSwAVClustering.load(_tampered(fit[1], tmp_path, change))


def test_a_checkpoint_during_the_fit_holds_every_candidate_and_resumes(fit, blobs):
    est, _, midway = fit
    content = load_checkpoint(midway)
    assert content["architecture"]["n_clusters"] == list(CANDIDATES)
    assert not {"labels_", "n_clusters_", "k_scores_"} & set(content["fitted"])
    resumed = IMCSwAVClustering.load(midway)
    assert resumed.n_iter_ == MIDWAY and not hasattr(resumed, "n_clusters_")
    assert resumed.predict_proba(blobs[0]).shape == (len(blobs[0]), CANDIDATES[0])  # the first candidate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed.set_params(warm_start=True).fit(blobs[0])
    assert resumed.n_iter_ == SETTINGS["max_epochs"]
    assert resumed.n_clusters_ == est.n_clusters_ and resumed.k_scores_ == est.k_scores_
    assert np.array_equal(resumed.predict_proba(blobs[0]), est.predict_proba(blobs[0]))


def test_a_warm_start_continues_the_chosen_k(fit, blobs):
    est = IMCSwAVClustering.load(fit[1])
    before = {name: value.clone() for name, value in est.model_.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(warm_start=True, max_epochs=SETTINGS["max_epochs"] + 1).fit(blobs[0])
    assert est.n_iter_ == SETTINGS["max_epochs"] + 1 and est.n_clusters_ == 3
    assert est.k_scores_ == fit[0].k_scores_  # the scores of the choice
    assert any(not torch.equal(before[name], value) for name, value in est.model_.state_dict().items())
    with pytest.raises(ValueError, match=r"n_clusters: 3 -> \[2, 4\]"):
        est.set_params(n_clusters=(2, 4)).fit(blobs[0])


def test_one_k_has_no_candidate_scores(saved):
    est = IMCSwAVClustering.load(saved[0])
    assert est.n_clusters_ == 3 and est.k_scores_ is None
    assert load_checkpoint(saved[0])["fitted"]["n_clusters_"] == 3
