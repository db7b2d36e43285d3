"""save/load, pickle and joblib round trips, safe loading, atomic checkpoints and exact resume."""

import pickle

import joblib
import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.persistence import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 255, size=(24, 8, 8, 3)).astype(np.uint8)


def weights_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.model_.state_dict().values(), b.model_.state_dict().values()))


def test_save_load_pickle_joblib_round_trips(tiny, images, tmp_path):
    est = tiny().fit(images)
    est.save(tmp_path / "model.cpt")
    copies = [IMCSwAVClustering.load(tmp_path / "model.cpt"), pickle.loads(pickle.dumps(est))]
    joblib.dump(est, tmp_path / "model.joblib")
    copies.append(joblib.load(tmp_path / "model.joblib"))
    for copy in copies:
        np.testing.assert_array_equal(copy.predict(images), est.predict(images))
        np.testing.assert_array_equal(copy.transform(images), est.transform(images))
        np.testing.assert_array_equal(copy.labels_, est.labels_)
        assert copy.get_params() == est.get_params()
        assert copy.history_ == est.history_ and copy.input_shape_ == est.input_shape_


def test_pickled_state_holds_cpu_tensors_only(tiny, images):
    state = tiny().fit(images).__getstate__()
    tensors = [v for v in state["model_"].values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert "device_" not in state  # resolved again where it is unpickled


def test_load_on_requested_device(tiny, images, tmp_path):
    tiny().fit(images).save(tmp_path / "m.cpt")
    assert IMCSwAVClustering.load(tmp_path / "m.cpt", device="cpu").device_ == torch.device("cpu")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("with_header", [False, True])
def test_crafted_file_is_refused_and_runs_nothing(tmp_path, with_header):
    """A pickle that would run code, bare or behind a valid integrity header."""
    import hashlib
    import io

    marker = tmp_path / "pwned"
    body = io.BytesIO()
    torch.save({"params": RunsCode(str(marker))}, body)
    body = body.getvalue()
    header = f"imc-cluster-checkpoint 2 9 sha256={hashlib.sha256(body).hexdigest()} bytes={len(body)}\n"
    (tmp_path / "evil.cpt").write_bytes((header.encode() if with_header else b"") + body)
    with pytest.raises(CheckpointError, match="refusing" if with_header else "not an imc-cluster"):
        IMCSwAVClustering.load(tmp_path / "evil.cpt")
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    ({"hello": 1}, "not an imc-cluster checkpoint"),
    ({"format": "imc-cluster", "format_version": 99, "library_version": "9.0"}, "format 99"),
])
def test_foreign_or_newer_files_are_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "x.cpt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "x.cpt")


def test_truncated_and_missing_files(tiny, images, tmp_path):
    tiny().fit(images).save(tmp_path / "m.cpt")
    data = (tmp_path / "m.cpt").read_bytes()
    (tmp_path / "cut.cpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        IMCSwAVClustering.load(tmp_path / "cut.cpt")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        IMCSwAVClustering.load(tmp_path / "absent.cpt")


def test_checkpoint_of_another_architecture(tiny, images, tmp_path):
    tiny().fit(images).save(tmp_path / "m.cpt")
    content = load_checkpoint(tmp_path / "m.cpt")
    content["architecture"]["width"] = 8
    save_checkpoint(content, tmp_path / "other.cpt", "test")
    with pytest.raises(CheckpointError, match="architecture"):
        IMCSwAVClustering.load(tmp_path / "other.cpt")


def test_failed_write_keeps_the_previous_checkpoint(tiny, images, tmp_path, monkeypatch):
    target = tmp_path / "m.cpt"
    tiny().fit(images).save(target)
    first = target.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(load_checkpoint(target), target, "test")
    monkeypatch.undo()
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cpt"]  # no temporary file left


def test_unwritable_checkpoint_folder_fails_before_training(tiny, images, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write checkpoints"):
        tiny(checkpoint_path=str(blocker / "m.cpt")).fit(images)


def test_checkpoint_every_epoch_and_exact_resume(tiny, images, tmp_path):
    path = tmp_path / "run.cpt"
    uninterrupted = tiny(max_epochs=4).fit(images)
    epochs_seen = []
    tiny(max_epochs=2, checkpoint_path=str(path)).fit(
        images, callbacks=[lambda est, record: epochs_seen.append(load_checkpoint(path)["fitted"]["n_iter_"])])
    assert epochs_seen == [1, 2]
    resumed = IMCSwAVClustering.load(path).set_params(max_epochs=4, warm_start=True).fit(images)
    assert resumed.n_iter_ == 4 and len(resumed.history_) == 4
    assert [r["loss"] for r in resumed.history_] == [r["loss"] for r in uninterrupted.history_]
    assert weights_equal(resumed, uninterrupted)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)


def test_warm_start_continues_a_fitted_estimator(tiny, images):
    est = tiny(max_epochs=2).fit(images)
    est.set_params(warm_start=True, max_epochs=3).fit(images)
    assert est.n_iter_ == 3 and est.training_state_["epoch"] == 3
    assert weights_equal(est, tiny(max_epochs=3).fit(images))
    # without warm_start a fit starts over
    assert tiny(max_epochs=3).fit(images).fit(images).n_iter_ == 3
