"""Checkpoint integrity and validation: any damage is reported as corruption, every section is checked,
and a checkpoint written on a GPU machine loads on a CPU-only one."""

import copy

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.persistence import SECTIONS, CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from conftest import TINY

    images = np.random.default_rng(0).integers(0, 255, size=(24, 8, 8, 3)).astype(np.uint8)
    path = tmp_path_factory.mktemp("cpt") / "m.cpt"
    IMCSwAVClustering(**{**TINY, "n_clusters": 3}).fit(images).save(path)
    return path, images


def one_line(error) -> bool:
    return "\n" not in str(error.value)


@pytest.mark.parametrize("fraction", np.linspace(0.02, 0.98, 25).round(3).tolist())
def test_a_flipped_bit_anywhere_is_corruption(saved, tmp_path, fraction):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[int(fraction * len(data))] ^= 0x10
    (tmp_path / "bit.cpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|not an imc-cluster checkpoint") as error:
        IMCSwAVClustering.load(tmp_path / "bit.cpt")
    assert one_line(error)


@pytest.mark.parametrize("kept", [0, 1, 100, 0.5, 0.99])
def test_truncation_is_corruption(saved, tmp_path, kept):
    path, _ = saved
    data = path.read_bytes()
    (tmp_path / "cut.cpt").write_bytes(data[: int(kept * len(data)) if isinstance(kept, float) else kept])
    with pytest.raises(CheckpointError, match="corrupt") as error:
        IMCSwAVClustering.load(tmp_path / "cut.cpt")
    assert one_line(error)


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_are_refused(tmp_path, seed):
    (tmp_path / "noise.cpt").write_bytes(np.random.default_rng(seed).bytes(5000))
    with pytest.raises(CheckpointError) as error:
        IMCSwAVClustering.load(tmp_path / "noise.cpt")
    assert one_line(error)


def tampered(saved, tmp_path, change):
    """The saved checkpoint with ``change(content)`` applied, written again under a valid digest: an intact
    file whose content is wrong."""
    content = copy.deepcopy(load_checkpoint(saved[0]))
    change(content)
    save_checkpoint(content, tmp_path / "t.cpt", "test")
    return tmp_path / "t.cpt"


CHANGES = {
    "a missing section": (lambda c: c.pop("inputs"), "inputs"),
    "params not a dict": (lambda c: c.__setitem__("params", [1]), "params"),
    "an unknown parameter": (lambda c: c["params"].__setitem__("evil", 1), "evil"),
    "an invalid parameter": (lambda c: c["params"].__setitem__("batch_size", -3), "batch_size"),
    "architecture of the wrong type": (lambda c: c["architecture"].__setitem__("width", "4"), "width"),
    "an unknown fitted attribute": (lambda c: c["fitted"].__setitem__("model_", 1), "model_"),
    "a fitted attribute missing": (lambda c: c["fitted"].pop("n_iter_"), "n_iter_"),
    "labels of the wrong type": (lambda c: c["fitted"].__setitem__("labels_", torch.zeros(3)), "labels_"),
    "history of the wrong type": (lambda c: c["fitted"].__setitem__("history_", [{"loss": "x"}]), "history_"),
    "a non-finite weight": (lambda c: c["model"]["head.0.weight"].__setitem__((0, 0), float("nan")), "NaN"),
    "a weight that is not a tensor": (lambda c: c["model"].__setitem__("head.0.bias", [0.0]), "head.0.bias"),
    "a weight of another shape": (lambda c: c["model"].__setitem__("head.0.bias", torch.zeros(3)), "architecture"),
    "a missing weight": (lambda c: c["model"].pop("head.0.bias"), "architecture"),
    "inputs with a zero std": (lambda c: c["inputs"].__setitem__("pixel_std", [0.2, 0.0, 0.2]), "pixel_std"),
    "inputs of another channel count": (lambda c: c["inputs"].__setitem__("pixel_mean", [0.5]), "pixel_mean"),
    "inputs of the wrong kind": (lambda c: c["inputs"].__setitem__("is_image", 1), "is_image"),
    "training state missing its optimiser": (lambda c: c["training"].pop("optimizer"), "optimizer"),
    "a generator state of the wrong type": (lambda c: c["training"].__setitem__("generator", "x"), "generator"),
    "vector statistics in an image checkpoint": (lambda c: c["inputs"].__setitem__("feature_mean", "zz"),
                                                 "feature_mean"),
    "an inverted pixel range": (lambda c: c["inputs"].__setitem__("pixel_range", [255.0, 0.0]), "pixel_range"),
    "a sample shape that is not the features'": (lambda c: c["inputs"].__setitem__("sample_shape", [3, 99, 99]),
                                                  "n_features_in_"),
    "a negative feature count": (lambda c: c["fitted"].__setitem__("n_features_in_", -5), "n_features_in_"),
    "a negative epoch": (lambda c: c["training"].__setitem__("epoch", -5), "epoch"),
    "an image_shape of the wrong type": (lambda c: c["inputs"].__setitem__("image_shape", "8x8"), "image_shape"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_section_is_validated(saved, tmp_path, name):
    change, match = CHANGES[name]
    with pytest.raises(CheckpointError, match=match) as error:
        IMCSwAVClustering.load(tampered(saved, tmp_path, change))
    assert one_line(error)


def test_the_sections_are_the_documented_ones(saved):
    assert tuple(load_checkpoint(saved[0])) == SECTIONS


def test_a_checkpoint_written_on_a_gpu_machine_loads_with_load_alone(saved, tmp_path):
    """As if written by a CUDA fit: device parameter "cuda:0", random state of a CUDA generator."""
    def as_if_from_a_gpu(content):
        content["params"]["device"] = "cuda:0"
        content["training"]["generator_device"] = "cuda"
        content["training"]["generator"] = torch.zeros(16, dtype=torch.uint8)

    path = tampered(saved, tmp_path, as_if_from_a_gpu)
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


def test_older_formats_are_refused_with_the_version(tmp_path):
    torch.save({"format": "imc-cluster", "format_version": 1, "library_version": "0.1.0", "params": {}},
               tmp_path / "old.cpt")
    with pytest.raises(CheckpointError, match="format 1.*reads format 2") as error:
        IMCSwAVClustering.load(tmp_path / "old.cpt")
    assert one_line(error)


def test_a_directory_or_a_cut_header_is_named(saved, tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        IMCSwAVClustering.load(tmp_path)
    (tmp_path / "head.cpt").write_bytes(saved[0].read_bytes()[:30])
    with pytest.raises(CheckpointError, match="header line is incomplete") as error:
        IMCSwAVClustering.load(tmp_path / "head.cpt")
    assert one_line(error)
