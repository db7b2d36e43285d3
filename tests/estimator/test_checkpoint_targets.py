"""Loading never aims at someone else's file: a loaded model has checkpoint_path=None and a warm start
writes only where its caller said; a tampered checkpoint (labels_ outside the clusters, weights of another
dtype) is refused; no lock file is left beside a checkpoint."""

import os
import shutil

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint

PARAMS = dict(
    n_clusters=3,
    image_shape=(8, 8),
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=40,
    max_epochs=1,
    warmup_updates=1,
    bn_recalibration_batches=1,
    random_state=0,
)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_copied_checkpoint_refitted_never_writes_over_the_original(digits, tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    original = tmp_path / "a" / "model.cpt"
    IMCSwAVClustering(**PARAMS, checkpoint_path="a/model.cpt" if relative else original).fit(digits)
    before = original.read_bytes()
    copy = tmp_path / "b.cpt"
    shutil.copy(original, copy)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = IMCSwAVClustering.load(copy)
    assert loaded.checkpoint_path is None
    loaded.set_params(warm_start=True, max_epochs=2).fit(digits)
    IMCSwAVClustering.load(copy).set_params(max_epochs=1).fit(digits)  # a fresh fit too
    assert original.read_bytes() == before
    assert sorted(os.listdir(tmp_path / "elsewhere")) == []
    assert load_checkpoint(copy)["params"]["checkpoint_path"] is None


def test_a_warm_start_writes_where_its_caller_says(digits, tmp_path):
    IMCSwAVClustering(**PARAMS, checkpoint_path=tmp_path / "first.cpt").fit(digits)
    loaded = IMCSwAVClustering.load(tmp_path / "first.cpt")
    before = (tmp_path / "first.cpt").read_bytes()
    loaded.set_params(warm_start=True, max_epochs=2, checkpoint_path=tmp_path / "second.cpt").fit(digits)
    assert load_checkpoint(tmp_path / "second.cpt")["fitted"]["n_iter_"] == 2
    assert (tmp_path / "first.cpt").read_bytes() == before


def test_no_lock_file_is_left_beside_a_checkpoint(digits, tmp_path):
    IMCSwAVClustering(**PARAMS, checkpoint_path=tmp_path / "m.cpt").fit(digits)
    assert sorted(os.listdir(tmp_path)) == ["m.cpt"]


def test_the_lock_still_keeps_a_second_fit_out(digits, tmp_path):
    from filelock import FileLock

    path = tmp_path / "m.cpt"
    with FileLock(f"{path}.lock"), pytest.raises(ValueError, match="Another process is training"):
        IMCSwAVClustering(**PARAMS, checkpoint_path=path).fit(digits)


@pytest.fixture(scope="module")
def written(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("written") / "m.cpt"
    IMCSwAVClustering(**PARAMS).fit(digits).save(path)
    return path


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda c: c["fitted"].__setitem__("labels_", c["fitted"]["labels_"] + 3), "labels_ outside"),
        (lambda c: c["fitted"].__setitem__("labels_", c["fitted"]["labels_"] - 1), "labels_ outside"),
        (lambda c: c["model"].__setitem__("head.0.weight", c["model"]["head.0.weight"].double()), "float64"),
        (lambda c: c["model"].__setitem__("head.0.weight", c["model"]["head.0.weight"].half()), "float16"),
        (
            lambda c: c["model"].__setitem__("prototypes.weight", c["model"]["prototypes.weight"].int()),
            "int32",
        ),
    ],
    ids=["labels above", "labels below", "float64 weight", "float16 weight", "integer weight"],
)
def test_a_tampered_checkpoint_is_refused(written, tmp_path, tamper, message):
    content = load_checkpoint(written)
    tamper(content)
    save_checkpoint(content, tmp_path / "t.cpt", "0.3.0")
    with pytest.raises(CheckpointError, match=message):
        IMCSwAVClustering.load(tmp_path / "t.cpt")


def test_a_checkpoint_holds_no_object_whatever_the_parameters(digits, tmp_path):
    from pathlib import PurePath

    est = IMCSwAVClustering(
        **{**PARAMS, "random_state": np.random.RandomState(0)}, checkpoint_path=tmp_path / "m.cpt"
    ).fit(digits)
    params = load_checkpoint(tmp_path / "m.cpt")["params"]
    assert params["random_state"] is None and params["checkpoint_path"] is None
    assert not any(isinstance(v, (PurePath, np.generic, np.ndarray, torch.Tensor)) for v in params.values())
    assert est.checkpoint_path == tmp_path / "m.cpt"


@pytest.mark.parametrize("copy_of", ["pickle", "deepcopy", "joblib"])
def test_a_copy_of_a_fitted_model_writes_no_checkpoint_where_its_original_does(digits, tmp_path, copy_of):
    import copy
    import pickle

    import joblib

    original = tmp_path / "a.cpt"
    est = IMCSwAVClustering(**PARAMS, checkpoint_path=original).fit(digits)
    before = original.read_bytes()
    if copy_of == "pickle":
        twin = pickle.loads(pickle.dumps(est))
    elif copy_of == "deepcopy":
        twin = copy.deepcopy(est)
    else:
        joblib.dump(est, tmp_path / "m.joblib")
        twin = joblib.load(tmp_path / "m.joblib")
    assert twin.checkpoint_path is None and est.checkpoint_path == original
    twin.set_params(warm_start=True, max_epochs=2).fit(digits)
    assert original.read_bytes() == before


def test_an_unfitted_copy_keeps_its_checkpoint_path(tmp_path):
    import pickle

    est = IMCSwAVClustering(**PARAMS, checkpoint_path=tmp_path / "a.cpt")
    assert pickle.loads(pickle.dumps(est)).checkpoint_path == tmp_path / "a.cpt"
