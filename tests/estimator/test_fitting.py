"""The fit step by step: the checkpoint of every epoch and an exact resume, warm starts (also failed ones),
the training precision; crashes and divergence: SIGKILL mid-epoch and resume, NaN losses rolled back, two
processes on one checkpoint."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import load_checkpoint
from imc_cluster.training.trainer import DivergenceError


def weights_equal(a, b):
    return all(
        torch.equal(x, y) for x, y in zip(a.model_.state_dict().values(), b.model_.state_dict().values())
    )


# ------------------------------------------------------------------ checkpoints and warm starts


def test_unwritable_checkpoint_folder_fails_before_training(tiny, small_images, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write checkpoints"):
        tiny(checkpoint_path=str(blocker / "m.cpt")).fit(small_images)


@pytest.mark.parametrize("n_heads", [1, 3])
def test_checkpoint_every_epoch_and_exact_resume(tiny, small_images, tmp_path, n_heads):
    path = tmp_path / "run.cpt"
    uninterrupted = tiny(max_epochs=4, n_heads=n_heads).fit(small_images)
    epochs_seen = []
    tiny(max_epochs=2, checkpoint_path=str(path), n_heads=n_heads).fit(
        small_images,
        callbacks=[lambda est, record: epochs_seen.append(load_checkpoint(path)["fitted"]["n_iter_"])],
    )
    assert epochs_seen == [1, 2]
    resumed = IMCSwAVClustering.load(path).set_params(max_epochs=4, warm_start=True).fit(small_images)
    assert resumed.n_iter_ == 4 and len(resumed.history_) == 4
    assert [r["loss"] for r in resumed.history_] == [r["loss"] for r in uninterrupted.history_]
    assert weights_equal(resumed, uninterrupted)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    assert resumed.best_head_ == uninterrupted.best_head_


def test_warm_start_continues_a_fitted_estimator(tiny, small_images):
    est = tiny(max_epochs=2).fit(small_images)
    est.set_params(warm_start=True, max_epochs=3).fit(small_images)
    assert est.n_iter_ == 3 and est.training_state_["epoch"] == 3
    assert weights_equal(est, tiny(max_epochs=3).fit(small_images))
    # without warm_start a fit starts over
    assert tiny(max_epochs=3).fit(small_images).fit(small_images).n_iter_ == 3


def test_a_failed_warm_start_retried_equals_an_uninterrupted_run(rgb_images, tiny_params):
    pixels = rgb_images
    params = {**tiny_params, "n_clusters": 3, "max_epochs": 1}
    uninterrupted = IMCSwAVClustering(**params).fit(pixels[0]).set_params(warm_start=True, max_epochs=3)
    uninterrupted.fit(pixels[0])

    est = IMCSwAVClustering(**params).fit(pixels[0]).set_params(warm_start=True, max_epochs=3)

    def interrupt(estimator, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        est.fit(pixels[0], callbacks=[interrupt])
    assert est.n_iter_ == 1
    est.fit(pixels[0])
    for (name, a), b in zip(uninterrupted.model_.state_dict().items(), est.model_.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in est.history_] == [r["loss"] for r in uninterrupted.history_]


def test_a_warm_start_with_another_normalization_is_refused(rgb_images, tiny_params):
    pixels = rgb_images
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    params = {**tiny_params, "n_clusters": 3, "max_epochs": 1, "normalization": (mean, std)}
    est = IMCSwAVClustering(**params).fit(pixels[0])
    est.set_params(warm_start=True, max_epochs=2).fit(pixels[0])  # the same statistics: continues
    assert est.n_iter_ == 2
    est.set_params(max_epochs=3, normalization=([0.4] * 3, std))
    with pytest.raises(ValueError, match="normalization"):
        est.fit(pixels[0])
    assert est.n_iter_ == 2


# ------------------------------------------------------------------ several cluster heads


def test_the_head_of_the_lowest_loss_over_the_last_epoch_predicts(tiny, small_images):
    est = tiny(n_heads=3).fit(small_images)
    last = est.history_[-1]
    assert len(last["mi_heads"]) == 3 and est.architecture_["n_heads"] == 3
    assert est.best_head_ == last["best_head"] == int(np.argmin(last["mi_heads"]))
    with torch.no_grad():  # every head on the encoder features
        every_head = est.model_.head(torch.from_numpy(est.transform(small_images))).double().softmax(dim=-1)
    proba = est.predict_proba(small_images)
    np.testing.assert_allclose(proba, every_head[est.best_head_].numpy(), rtol=1e-5, atol=1e-7)
    assert all(not np.allclose(proba, every_head[h].numpy()) for h in range(3) if h != est.best_head_)
    np.testing.assert_array_equal(est.predict(small_images), proba.argmax(axis=1))
    np.testing.assert_array_equal(est.labels_, proba.argmax(axis=1))


def test_a_warm_start_keeps_the_head_count(tiny, small_images):
    est = tiny(n_heads=3, max_epochs=1).fit(small_images)
    est.set_params(warm_start=True, max_epochs=2).fit(small_images)
    assert est.n_iter_ == 2 and [len(r["mi_heads"]) for r in est.history_] == [3, 3]
    for n_heads in (1, 4):
        with pytest.raises(ValueError, match=f"n_heads: 3 -> {n_heads}"):
            est.set_params(max_epochs=3, n_heads=n_heads).fit(small_images)
    assert est.n_iter_ == 2


# ------------------------------------------------------------------ crashes and divergence


TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from imc_cluster import IMCSwAVClustering
    torch.set_num_threads(1)
    X = np.random.default_rng(0).integers(0, 255, size=(192, 12, 12, 3)).astype(np.uint8)
    est = IMCSwAVClustering(n_clusters=3, backbone_width=8, n_prototypes=10, projection_dim=8,
                            head_hidden_dim=16, batch_size=32, warmup_updates=3, bn_recalibration_batches=2,
                            random_state=0, max_epochs=int(sys.argv[2]), checkpoint_path=sys.argv[1])
    est.fit(X)
""")


KWARGS = dict(
    n_clusters=3,
    backbone_width=8,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=32,
    warmup_updates=3,
    bn_recalibration_batches=2,
    random_state=0,
)


def images():
    return np.random.default_rng(0).integers(0, 255, size=(192, 12, 12, 3)).astype(np.uint8)


def start(script, checkpoint, epochs):
    return subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), str(epochs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epoch(checkpoint, epoch, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.exists() and load_checkpoint(checkpoint)["fitted"]["n_iter_"] >= epoch:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not reach the epoch in time")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN_SCRIPT)
    return path


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(script, tmp_path):
    torch.set_num_threads(1)  # as in the child: same kernels, same bits
    checkpoint = tmp_path / "run.cpt"
    child = start(script, checkpoint, epochs=6)
    wait_for_epoch(checkpoint, 2, child)
    time.sleep(0.15)  # well inside the next epoch
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = load_checkpoint(checkpoint)["fitted"]["n_iter_"]
    assert 2 <= saved < 6
    resumed = IMCSwAVClustering.load(checkpoint).set_params(warm_start=True).fit(images())
    straight = IMCSwAVClustering(max_epochs=6, **KWARGS).fit(images())
    assert resumed.n_iter_ == 6
    for a, b in zip(resumed.model_.state_dict().values(), straight.model_.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(resumed.labels_, straight.labels_)


def test_two_processes_cannot_share_a_checkpoint(script, tmp_path):
    checkpoint = tmp_path / "shared.cpt"
    first = start(script, checkpoint, epochs=100_000)  # runs until killed
    try:
        wait_for_epoch(checkpoint, 1, first)
        second = start(script, checkpoint, epochs=2)
        _, err = second.communicate(timeout=120)
        assert first.poll() is None  # the first was training all along
        assert second.returncode != 0 and "Another process is training into" in err
        wait_for_epoch(checkpoint, load_checkpoint(checkpoint)["fitted"]["n_iter_"] + 1, first)
    finally:
        first.kill()
        first.wait()
    assert IMCSwAVClustering.load(checkpoint).n_iter_ >= 2  # the first run's checkpoint is intact


def poison_after(epoch):
    def callback(estimator, record):
        if record["epoch"] == epoch:
            with torch.no_grad():
                estimator.model_.projection[0].weight.fill_(float("nan"))

    return callback


@pytest.mark.parametrize("with_checkpoint", [True, False], ids=["rollback from the checkpoint", "in memory"])
def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_state(tmp_path, with_checkpoint):
    checkpoint = tmp_path / "run.cpt"
    X = images()
    est = IMCSwAVClustering(
        max_epochs=5, checkpoint_path=str(checkpoint) if with_checkpoint else None, **KWARGS
    )
    with pytest.raises(DivergenceError, match=r"epoch 3, step 1 of 6"):
        est.fit(X, callbacks=[poison_after(2)])
    good = IMCSwAVClustering(max_epochs=2, **KWARGS).fit(X)
    assert est.n_iter_ == 2 and len(est.history_) == 2
    for a, b in zip(est.model_.state_dict().values(), good.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert np.isfinite(est.predict_proba(X)).all()
    np.testing.assert_array_equal(est.labels_, good.labels_)
    assert (
        est.training_state_["epoch"] == 2
        and est.training_state_["updates"] == good.training_state_["updates"]
    )
    resumed = est.set_params(warm_start=True, max_epochs=3).fit(X)  # continues exactly like a clean run
    clean = IMCSwAVClustering(max_epochs=3, **KWARGS).fit(X)
    for a, b in zip(resumed.model_.state_dict().values(), clean.model_.state_dict().values()):
        assert torch.equal(a, b)
    if with_checkpoint:
        saved = IMCSwAVClustering.load(checkpoint)
        assert saved.n_iter_ == 3 and all(torch.isfinite(v).all() for v in saved.model_.state_dict().values())


def test_divergence_in_the_first_epoch_leaves_the_estimator_unfitted():
    est = IMCSwAVClustering(
        max_epochs=2,
        learning_rate=1e30,
        warmup_updates=0,
        **{k: v for k, v in KWARGS.items() if k != "warmup_updates"},
    )
    with pytest.raises(DivergenceError, match="epoch 1"):
        est.fit(images())
    assert not hasattr(est, "model_")


def test_a_failed_warm_start_leaves_the_fitted_model_as_it_was():
    X = images()
    est = IMCSwAVClustering(max_epochs=1, **KWARGS).fit(X)
    before = {k: v.clone() for k, v in est.model_.state_dict().items()}
    labels, state = est.predict(X), est.training_state_

    def interrupt(estimator, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        est.set_params(warm_start=True, max_epochs=3).fit(X, callbacks=[interrupt])
    assert est.n_iter_ == 1 and est.training_state_ is state and len(est.history_) == 1
    for name, value in est.model_.state_dict().items():
        assert torch.equal(value, before[name]), name
    np.testing.assert_array_equal(est.predict(X), labels)
