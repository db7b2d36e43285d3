"""The estimator saved and loaded: save/load, pickle and joblib round trips, the device of a loaded model
(a checkpoint written on a GPU machine loads on a CPU-only one), and weights that do not fit the saved
architecture."""

import pickle

import joblib
import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from imc_cluster.data.datasets import load_dataset

# ------------------------------------------------------------------ round trips


def test_save_load_pickle_joblib_round_trips(tiny, small_images, tmp_path):
    est = tiny().fit(small_images)
    est.save(tmp_path / "model.cpt")
    copies = [IMCSwAVClustering.load(tmp_path / "model.cpt"), pickle.loads(pickle.dumps(est))]
    joblib.dump(est, tmp_path / "model.joblib")
    copies.append(joblib.load(tmp_path / "model.joblib"))
    for restored in copies:
        np.testing.assert_array_equal(restored.predict(small_images), est.predict(small_images))
        np.testing.assert_array_equal(restored.transform(small_images), est.transform(small_images))
        np.testing.assert_array_equal(restored.labels_, est.labels_)
        assert restored.get_params() == est.get_params()
        assert restored.history_ == est.history_ and restored.input_shape_ == est.input_shape_


def test_pickled_state_holds_cpu_tensors_only(tiny, small_images):
    state = tiny().fit(small_images).__getstate__()
    tensors = [v for v in state["model_"].values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert "device_" not in state  # resolved again where it is unpickled


# ------------------------------------------------------------------ devices


def test_load_on_requested_device(tiny, small_images, tmp_path):
    tiny().fit(small_images).save(tmp_path / "m.cpt")
    assert IMCSwAVClustering.load(tmp_path / "m.cpt", device="cpu").device_ == torch.device("cpu")


def test_a_checkpoint_written_on_a_gpu_machine_loads_with_load_alone(saved, tampered):
    """As if written by a CUDA fit: device parameter "cuda:0", random state of a CUDA generator."""

    def as_if_from_a_gpu(content):
        content["params"]["device"] = "cuda:0"
        content["training"]["generator_device"] = "cuda"
        content["training"]["generator"] = torch.zeros(16, dtype=torch.uint8)

    path = tampered(as_if_from_a_gpu)
    est = IMCSwAVClustering.load(path)
    reference = IMCSwAVClustering.load(saved[0])
    if not torch.cuda.is_available():
        assert est.device_ == torch.device("cpu")
    np.testing.assert_array_equal(est.predict_proba(saved[1]), reference.predict_proba(saved[1]))
    est.set_params(warm_start=True, max_epochs=est.n_iter_ + 1, device="cpu").fit(saved[1])
    assert est.n_iter_ == reference.n_iter_ + 1


def test_a_device_asked_for_must_exist(saved):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="CUDA is not available"):
        IMCSwAVClustering.load(saved[0], device="cuda")


# ------------------------------------------------------------------ weights and architecture


def test_checkpoint_of_another_architecture(tiny, small_images, tmp_path):
    tiny().fit(small_images).save(tmp_path / "m.cpt")
    content = load_checkpoint(tmp_path / "m.cpt")
    content["architecture"]["width"] = 8
    save_checkpoint(content, tmp_path / "other.cpt", "test")
    with pytest.raises(CheckpointError, match="architecture"):
        IMCSwAVClustering.load(tmp_path / "other.cpt")


def test_checkpoint_of_another_architecture_and_missing_paths(saved, tmp_path):
    content = load_checkpoint(saved[0])
    content["architecture"]["backbone"] = "resnet34"
    save_checkpoint(content, tmp_path / "other.cpt", "test")  # intact, but its weights are a ResNet-18's
    with pytest.raises(CheckpointError, match="architecture"):
        IMCSwAVClustering.load(tmp_path / "other.cpt")
    with pytest.raises(FileNotFoundError, match="absent"):
        load_dataset("folder", tmp_path / "absent", download=False)


# ------------------------------------------------------------------ several cluster heads


def test_a_model_of_several_heads_round_trips_with_its_best_head(tiny, small_images, tmp_path):
    est = tiny(n_heads=3).fit(small_images)
    est.save(tmp_path / "m.cpt")
    content = load_checkpoint(tmp_path / "m.cpt")
    assert content["architecture"]["n_heads"] == 3 and content["fitted"]["best_head_"] == est.best_head_
    for restored in (IMCSwAVClustering.load(tmp_path / "m.cpt"), pickle.loads(pickle.dumps(est))):
        assert restored.best_head_ == est.best_head_ and restored.architecture_["n_heads"] == 3
        np.testing.assert_array_equal(restored.predict_proba(small_images), est.predict_proba(small_images))
    other = (est.best_head_ + 1) % 3  # the checkpoint's best head is the one that predicts
    content["fitted"]["best_head_"] = other
    save_checkpoint(content, tmp_path / "other.cpt", "test")
    loaded = IMCSwAVClustering.load(tmp_path / "other.cpt")
    est.model_.select_head(other)
    assert loaded.best_head_ == other
    np.testing.assert_array_equal(loaded.predict_proba(small_images), est.predict_proba(small_images))


def test_a_checkpoint_and_a_pickle_of_version_0_3_load_with_one_head(saved, tampered):
    """imc-cluster 0.3 saved no head count and no best head."""

    def as_of_version_0_3(content):
        del content["architecture"]["n_heads"], content["fitted"]["best_head_"]

    est, reference = IMCSwAVClustering.load(tampered(as_of_version_0_3)), IMCSwAVClustering.load(saved[0])
    state = reference.__getstate__()
    del state["best_head_"]
    state["architecture_"] = {k: v for k, v in state["architecture_"].items() if k != "n_heads"}
    unpickled = IMCSwAVClustering.__new__(IMCSwAVClustering)
    unpickled.__setstate__(state)
    for old in (est, unpickled):
        assert old.best_head_ == 0 and old.architecture_ == reference.architecture_
        np.testing.assert_array_equal(old.predict_proba(saved[1]), reference.predict_proba(saved[1]))
    est.set_params(warm_start=True, max_epochs=est.n_iter_ + 1).fit(saved[1])  # the same architecture
    assert est.n_iter_ == reference.n_iter_ + 1


@pytest.mark.parametrize("best_head", [1, -1])
def test_a_best_head_that_the_network_lacks_is_refused(tampered, best_head):
    path = tampered(lambda content: content["fitted"].__setitem__("best_head_", best_head))
    with pytest.raises(CheckpointError, match=f"best_head_.*head {best_head} does not exist"):
        IMCSwAVClustering.load(path)
