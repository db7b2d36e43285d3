"""Checkpoint sections: a wrong key, type or value in any section, or sections that disagree, is a
CheckpointError that names the entry; a valid content passes."""

import copy

import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint
from imc_cluster.checkpoints.sections import SECTIONS, validate_sections


def one_line(error) -> bool:
    return "\n" not in str(error.value)


CHANGES = {
    "a missing section": (lambda c: c.pop("inputs"), "inputs"),
    "params not a dict": (lambda c: c.__setitem__("params", [1]), "params"),
    "an unknown parameter": (lambda c: c["params"].__setitem__("evil", 1), "evil"),
    "an invalid parameter": (lambda c: c["params"].__setitem__("batch_size", -3), "batch_size"),
    "architecture of the wrong type": (lambda c: c["architecture"].__setitem__("width", "4"), "width"),
    "an unknown fitted attribute": (lambda c: c["fitted"].__setitem__("model_", 1), "model_"),
    "a fitted attribute missing": (lambda c: c["fitted"].pop("n_iter_"), "n_iter_"),
    "labels of the wrong type": (lambda c: c["fitted"].__setitem__("labels_", torch.zeros(3)), "labels_"),
    "history of the wrong type": (
        lambda c: c["fitted"].__setitem__("history_", [{"loss": {"nested": "dict"}}]),
        "history_",
    ),
    "a non-finite weight": (lambda c: c["model"]["head.0.weight"].__setitem__((0, 0), float("nan")), "NaN"),
    "a weight that is not a tensor": (lambda c: c["model"].__setitem__("head.0.bias", [0.0]), "head.0.bias"),
    "a weight of another shape": (
        lambda c: c["model"].__setitem__("head.0.bias", torch.zeros(3)),
        "architecture",
    ),
    "a missing weight": (lambda c: c["model"].pop("head.0.bias"), "architecture"),
    "inputs with a zero std": (lambda c: c["inputs"].__setitem__("pixel_std", [0.2, 0.0, 0.2]), "pixel_std"),
    "inputs of another channel count": (lambda c: c["inputs"].__setitem__("pixel_mean", [0.5]), "pixel_mean"),
    "inputs of the wrong kind": (lambda c: c["inputs"].__setitem__("is_image", 1), "is_image"),
    "training state missing its optimiser": (lambda c: c["training"].pop("optimizer"), "optimizer"),
    "a generator state of the wrong type": (
        lambda c: c["training"].__setitem__("generator", "x"),
        "generator",
    ),
    "vector statistics in an image checkpoint": (
        lambda c: c["inputs"].__setitem__("feature_mean", "zz"),
        "feature_mean",
    ),
    "an inverted pixel range": (
        lambda c: c["inputs"].__setitem__("pixel_range", [255.0, 0.0]),
        "pixel_range",
    ),
    "a sample shape that is not the features'": (
        lambda c: c["inputs"].__setitem__("sample_shape", [3, 99, 99]),
        "n_features_in_",
    ),
    "a negative feature count": (lambda c: c["fitted"].__setitem__("n_features_in_", -5), "n_features_in_"),
    "a negative epoch": (lambda c: c["training"].__setitem__("epoch", -5), "epoch"),
    "a head count of the wrong type": (lambda c: c["architecture"].__setitem__("n_heads", 3.0), "n_heads"),
    "a head count the weights lack": (lambda c: c["architecture"].__setitem__("n_heads", 2), "architecture"),
    "a best head of the wrong type": (lambda c: c["fitted"].__setitem__("best_head_", True), "best_head_"),
    "an image_shape of the wrong type": (
        lambda c: c["inputs"].__setitem__("image_shape", "8x8"),
        "image_shape",
    ),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_section_is_validated(tampered, name):
    change, match = CHANGES[name]
    with pytest.raises(CheckpointError, match=match) as error:
        IMCSwAVClustering.load(tampered(change))
    assert one_line(error)


def test_the_sections_are_the_documented_ones(saved):
    assert tuple(load_checkpoint(saved[0])) == SECTIONS


def test_a_saved_content_is_valid_and_is_not_altered(saved):
    content = load_checkpoint(saved[0])
    before = copy.deepcopy(content)
    validate_sections(content)
    assert content.keys() == before.keys()
    assert all(torch.equal(content["model"][k], before["model"][k]) for k in before["model"])
