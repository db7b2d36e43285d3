"""Fit callbacks: early stopping, TensorBoard, and the hooks of the callback protocol."""

import sys
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from imc_cluster import EarlyStopping, IMCSwAVClustering, StopTraining, TensorBoard
from imc_cluster.estimator.callbacks import EVENT_FILE_SUFFIX

#: tiny ResNet on 8x8 digits: 128 images in 2 batches of 64, 4 views each
DIGITS = dict(
    n_clusters=10,
    image_shape=(8, 8),
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    n_small_crops=2,
    batch_size=64,
    max_epochs=3,
    warmup_updates=2,
    bn_recalibration_batches=2,
    random_state=0,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:128], y[:128]


def epochs_until_stop(callback, values, key="loss"):
    """Feed ``values`` as the records of a fit; the epoch at which ``callback`` stopped it, or None."""
    callback.on_fit_begin(None)
    for epoch, value in enumerate(values, start=1):
        try:
            callback(None, {"epoch": epoch, key: value, "lr": 0.1})
        except StopTraining:
            return epoch
    return None


def same_weights(a, b) -> bool:
    sa, sb = a.model_.state_dict(), b.model_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ EarlyStopping on record sequences


@pytest.mark.parametrize("patience", [1, 3])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_stops_after_patience_epochs_without_improvement(mode, patience):
    worse = list(range(10)) if mode == "min" else list(range(10, 0, -1))
    better = worse[::-1]
    stop = EarlyStopping(patience=patience, mode=mode)
    assert epochs_until_stop(stop, worse) == 1 + patience
    assert (stop.best_, stop.best_epoch_, stop.stopped_epoch_) == (worse[0], 1, 1 + patience)
    assert epochs_until_stop(stop, better) is None
    assert (stop.best_, stop.best_epoch_, stop.stopped_epoch_) == (better[-1], 10, None)


def test_an_improvement_resets_the_patience_and_min_delta_sets_what_counts():
    values = [5, 4, 4.5, 3.9, 4.2, 4.1, 4.0, 3.0]
    assert epochs_until_stop(EarlyStopping(patience=3), values) == 7  # best 3.9 at epoch 4
    assert epochs_until_stop(EarlyStopping(patience=3, min_delta=0.2), values) == 5  # best 4 at epoch 2
    halves = [10, 9.5, 9, 8.5, 8, 7.5]
    assert epochs_until_stop(EarlyStopping(patience=2, min_delta=1.0), halves) == 3  # 9 is not 1 better
    assert epochs_until_stop(EarlyStopping(patience=2, min_delta=0.4), halves) is None


def test_each_fit_has_its_own_patience():
    stop = EarlyStopping(patience=2)
    assert epochs_until_stop(stop, [1, 2, 3, 4]) == 3
    stop.on_fit_begin(None)  # a warm start: the next epochs are compared among themselves
    stop(None, {"epoch": 4, "loss": 9.0})
    stop(None, {"epoch": 5, "loss": 9.5})
    assert stop.best_ == 9.0 and stop.stopped_epoch_ is None


def test_monitors_any_key_of_the_records():
    stop = EarlyStopping(monitor="acc", mode="max", patience=1)
    assert epochs_until_stop(stop, [0.5, 0.6, 0.6], "acc") == 3


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(patience=0), ValueError),
        (dict(patience=-1), ValueError),
        (dict(patience=1.5), ValueError),
        (dict(patience=True), ValueError),
        (dict(min_delta=-0.1), ValueError),
        (dict(min_delta=float("nan")), ValueError),
        (dict(min_delta=float("inf")), ValueError),
        (dict(min_delta="0"), ValueError),
        (dict(mode="avg"), ValueError),
        (dict(mode=None), ValueError),
        (dict(monitor=3), TypeError),
        (dict(monitor=None), TypeError),
    ],
)
def test_bad_early_stopping_parameters(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        EarlyStopping(**kwargs)


# ------------------------------------------------------------------ stopping a real fit


def test_a_stopped_fit_is_finished_as_after_its_last_epoch(digits, tmp_path):
    X, _ = digits
    stop = EarlyStopping(monitor="loss", patience=1, min_delta=1e9)  # nothing improves by 1e9
    path = tmp_path / "model.cpt"
    est = IMCSwAVClustering(**DIGITS, checkpoint_path=path).fit(X, callbacks=[stop])
    assert est.n_iter_ == len(est.history_) == stop.stopped_epoch_ == 2 and stop.best_epoch_ == 1
    # the same model, BatchNorm statistics included, as a fit asked for 2 epochs
    reference = IMCSwAVClustering(**{**DIGITS, "max_epochs": 2}).fit(X)
    assert same_weights(est, reference) and not est.model_.training
    np.testing.assert_array_equal(est.labels_, reference.labels_)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    loaded = IMCSwAVClustering.load(path)
    assert loaded.n_iter_ == 2 and same_weights(loaded, est)
    np.testing.assert_array_equal(loaded.labels_, est.labels_)
    np.testing.assert_array_equal(loaded.predict(X), est.labels_)
    # a warm start continues up to max_epochs, the callback counting its patience afresh
    est.set_params(warm_start=True).fit(X, callbacks=[stop])
    assert est.n_iter_ == len(est.history_) == 3 and stop.stopped_epoch_ is None
    assert IMCSwAVClustering.load(path).n_iter_ == 3


def test_stopping_on_the_accuracy_of_an_eval_set(digits):
    X, y = digits
    stop = EarlyStopping(monitor="acc", mode="max", patience=1, min_delta=1.0)  # accuracy cannot gain 1
    est = IMCSwAVClustering(**DIGITS).fit(X, eval_set=(X, y), callbacks=[stop])
    assert est.n_iter_ == 2 and stop.stopped_epoch_ == 2 and stop.best_ == est.history_[0]["acc"]
    reference = IMCSwAVClustering(**{**DIGITS, "max_epochs": 2}).fit(X, eval_set=(X, y))
    assert same_weights(est, reference)
    np.testing.assert_array_equal(est.labels_, reference.labels_)


def test_an_unknown_monitor_fails_at_the_first_epoch_naming_the_keys(tiny, rgb_images):
    images, _ = rgb_images
    seen = []
    est = tiny()
    with pytest.raises(ValueError, match=r"monitors 'acc'.*'loss', 'swav'.*eval_set"):
        est.fit(images, callbacks=[lambda e, record: seen.append(record), EarlyStopping(monitor="acc")])
    assert [record["epoch"] for record in seen] == [1] and not hasattr(est, "model_")


def test_every_callback_sees_the_epoch_a_stop_was_asked_in(tiny, rgb_images, capsys):
    images, _ = rgb_images

    def stop_now(est, record):
        raise StopTraining("enough.")

    seen = []
    est = tiny(max_epochs=3, verbose=1)
    est.fit(images, callbacks=[stop_now, lambda e, record: seen.append(record["epoch"])])
    assert est.n_iter_ == 1 and seen == [1] and est.labels_.shape == (24,)
    assert "IMC-SwAV: stopped after epoch 1. enough." in capsys.readouterr().out


class Hooks:
    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def on_fit_begin(self, est):
        self.calls.append(("begin", est.n_iter_))

    def __call__(self, est, record):
        self.calls.append(("epoch", record["epoch"]))
        if record["epoch"] == self.fail_at:
            raise KeyError("a bug in the callback")

    def on_fit_end(self, est):
        self.calls.append(("end", est.n_iter_))


def test_the_hooks_run_around_every_fit_even_a_failed_one(tiny, rgb_images):
    images, _ = rgb_images
    hooks = Hooks()
    est = tiny(max_epochs=2).fit(images, callbacks=[hooks])
    est.set_params(warm_start=True, max_epochs=3).fit(images, callbacks=[hooks])
    assert hooks.calls == [
        ("begin", 0),
        ("epoch", 1),
        ("epoch", 2),
        ("end", 2),
        ("begin", 2),
        ("epoch", 3),
        ("end", 3),
    ]
    failing = Hooks(fail_at=1)
    with pytest.raises(KeyError, match="a bug"):
        tiny().fit(images, callbacks=[failing])
    assert failing.calls == [("begin", 0), ("epoch", 1), ("end", 1)]


# ------------------------------------------------------------------ TensorBoard


def read_scalars(log_dir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_logged(history) -> dict:
    """The scalars that ``history`` should give: every numeric value but the epoch, in float32, and every
    entry of a list of numbers (one per head) under ``key/index``."""
    logged: dict = {}
    for record in history:
        for key, value in record.items():
            entries = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, item in entries if key != "epoch" else ():
                name = key if index is None else f"{key}/{index}"
                logged.setdefault(name, []).append((record["epoch"], float(np.float32(item))))
    return logged


def next_second():
    """Event files are ordered by the second of their creation in their name."""
    time.sleep(1.02 - time.time() % 1)


def test_tensorboard_scalars_equal_the_history(tiny, rgb_images, tmp_path):
    images, labels = rgb_images
    board = TensorBoard(tmp_path / "runs")
    est = tiny(max_epochs=2).fit(images, eval_set=(images, labels), callbacks=[board])
    assert {"acc", "nmi", "ari", "loss", "lr", "updates"} <= set(est.history_[0])
    assert read_scalars(tmp_path / "runs") == as_logged(est.history_)
    # a warm start adds its epochs to the same curves
    next_second()
    est.set_params(warm_start=True, max_epochs=3).fit(images, eval_set=(images, labels), callbacks=[board])
    assert read_scalars(tmp_path / "runs") == as_logged(est.history_)
    # a new fit replaces this callback's files, and leaves other files alone
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path / "runs", filename_suffix=".other") as foreign:
        foreign.add_scalar("foreign", 1.0, 0)
    est = tiny(max_epochs=1, random_state=5).fit(images, callbacks=[board])
    scalars = read_scalars(tmp_path / "runs")
    assert scalars.pop("foreign") == [(0, 1.0)] and scalars == as_logged(est.history_)
    assert len(list((tmp_path / "runs").glob(f"*{EVENT_FILE_SUFFIX}"))) == 1


def test_tensorboard_warm_start_hides_what_an_interrupted_fit_logged_later(tmp_path):
    board = TensorBoard(tmp_path)
    for epoch in (1, 2, 3):  # a fit interrupted after epoch 3, whose checkpoint holds epoch 2
        board(None, {"epoch": epoch, "loss": float(epoch)})
    board.on_fit_end(None)
    next_second()
    board.on_fit_begin(None)
    for epoch in (3, 4):  # its warm start from the checkpoint
        board(None, {"epoch": epoch, "loss": 10.0 * epoch})
    board.on_fit_end(None)
    assert read_scalars(tmp_path) == {"loss": [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]}


def test_tensorboard_without_purge_keeps_older_files(tmp_path):
    board = TensorBoard(tmp_path, purge=False)
    for _ in range(2):
        board.on_fit_begin(None)
        board(None, {"epoch": 1, "loss": 1.0, "converged": True})
        board.on_fit_end(None)
    assert len(list(tmp_path.glob(f"*{EVENT_FILE_SUFFIX}"))) == 2
    assert set(read_scalars(tmp_path)) == {"loss"}  # booleans are not scalars


def test_tensorboard_needs_the_tensorboard_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install .imc-cluster\[tensorboard\]."):
        TensorBoard(tmp_path)
