"""What a callback may do (the contract in imc_cluster.estimator.callbacks): predict, transform, score and
save without changing the training, annotate the record with plain values that checkpoints keep; and what
it may not: fit the estimator again."""

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering, StopTraining

PARAMS = dict(
    n_clusters=3,
    image_shape=(8, 8),
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=40,
    max_epochs=3,
    warmup_updates=1,
    bn_recalibration_batches=2,
    random_state=0,
)


@pytest.fixture(scope="module")
def untouched(digits):
    return IMCSwAVClustering(**PARAMS).fit(digits)


def same_fit(a, b):
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for (name, x), y in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(x, y), name
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]


def test_predicting_a_validation_set_inside_a_callback_changes_nothing(digits, digit_labels, untouched):
    X, y = digits, digit_labels
    seen = []

    def validate(est, record):
        labels = est.predict(X[::3])
        record["val_acc"] = est.score(X[::3], y[::3])
        seen.append((labels, est.predict_proba(X[:5]), est.transform(X[:5]), est.score(X[:5])))

    def begin_and_end(est):
        est.predict(X[:5])

    validate.on_fit_begin = begin_and_end
    validate.on_fit_end = begin_and_end
    watched = IMCSwAVClustering(**PARAMS).fit(X, callbacks=[validate])
    same_fit(watched, untouched)
    assert len(seen) == 3 and all(0 <= r["val_acc"] <= 1 for r in watched.history_)
    assert not watched.model_.training


def test_saving_inside_a_callback_changes_nothing_and_the_file_loads(digits, untouched, tmp_path):
    saved = []

    def save(est, record):
        path = tmp_path / f"epoch{record['epoch']}.cpt"
        est.save(path)
        saved.append(path)

    same_fit(IMCSwAVClustering(**PARAMS).fit(digits, callbacks=[save]), untouched)
    assert [IMCSwAVClustering.load(p).n_iter_ for p in saved] == [1, 2, 3]


@pytest.mark.parametrize(
    "value, stored",
    [
        (True, True),
        ("a note", "a note"),
        (None, None),
        (np.float32(0.25), 0.25),
        (np.int64(7), 7),
        ([1, "a", None], [1, "a", None]),
        (np.array([0.5, 1.5]), [0.5, 1.5]),
        ({"x": 1}, "{'x': 1}"),
    ],
)
def test_a_record_annotated_by_a_callback_keeps_the_checkpoint_readable(digits, tmp_path, value, stored):
    path = tmp_path / "run.cpt"

    def annotate(est, record):
        record["note"] = value

    est = IMCSwAVClustering(**{**PARAMS, "max_epochs": 2, "checkpoint_path": path}).fit(
        digits, callbacks=[annotate]
    )
    assert est.history_[-1]["note"] is value
    est.save(tmp_path / "saved.cpt")
    for written in (path, tmp_path / "saved.cpt"):
        assert IMCSwAVClustering.load(written).history_[-1]["note"] == stored
    resumed = IMCSwAVClustering.load(path).set_params(warm_start=True, max_epochs=3).fit(digits)
    assert resumed.n_iter_ == 3


def test_a_callback_may_not_fit_the_estimator_again(digits):
    def refit(est, record):
        est.fit(digits)

    est = IMCSwAVClustering(**PARAMS)
    with pytest.raises(RuntimeError, match="from a callback"):
        est.fit(digits, callbacks=[refit])
    assert not hasattr(est, "model_")
    est.set_params(max_epochs=1).fit(digits)  # the refusal leaves the estimator usable


def test_a_callback_may_fit_another_estimator(digits):
    other = IMCSwAVClustering(**{**PARAMS, "max_epochs": 1})

    def fit_other(est, record):
        other.fit(digits)
        raise StopTraining

    IMCSwAVClustering(**PARAMS).fit(digits, callbacks=[fit_other])
    assert other.n_iter_ == 1
