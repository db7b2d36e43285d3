"""Moving input handling, the checkpoint format and the epoch loop out of the estimator changed no result:
fits of several configurations give the same weights (bit for bit), labels, losses and metrics on the CPU
as the code before the move, whose values ``tests/recorded/before_restructuring.json`` records."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering

RECORDED = json.loads((Path(__file__).parents[1] / "recorded" / "before_restructuring.json").read_text())
TINY = dict(
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=16,
    max_epochs=2,
    warmup_updates=2,
    bn_recalibration_batches=2,
    random_state=0,
    n_clusters=3,
)


def data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    rgb = (rng.integers(0, 80, size=(24, 12, 12, 3)) + 80 * labels[:, None, None, None]).astype(np.uint8)
    return rgb, labels, rng.uniform(0, 16, size=(30, 64))


def weights_digest(est):
    hasher = hashlib.sha256()
    for name, tensor in est.model_.state_dict().items():
        hasher.update(name.encode())
        hasher.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def warm_started(rgb):
    est = IMCSwAVClustering(**{**TINY, "max_epochs": 1}).fit(rgb)
    return est.set_params(warm_start=True, max_epochs=3).fit(rgb)


CASES = {
    "rgb": lambda rgb, labels, grey: IMCSwAVClustering(**TINY).fit(rgb),
    "rgb_eval_set": lambda rgb, labels, grey: IMCSwAVClustering(**TINY).fit(
        rgb, eval_set=(rgb[::2], labels[::2])
    ),
    "grey_flat_floats": lambda rgb, labels, grey: IMCSwAVClustering(**{**TINY, "image_shape": (8, 8)}).fit(
        grey
    ),
    "head_mask": lambda rgb, labels, grey: IMCSwAVClustering(**TINY).fit(
        rgb, head_mask=np.arange(24) % 3 == 0
    ),
    "warm_start": lambda rgb, labels, grey: warm_started(rgb),
    "checkpointing": lambda rgb, labels, grey: IMCSwAVClustering(
        **{**TINY, "activation_checkpointing": True}
    ).fit(rgb),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_equals_the_recorded_fit_of_the_code_before_the_move(name):
    est = CASES[name](*data())
    recorded = RECORDED[name]
    assert weights_digest(est) == recorded["weights_sha256"]
    assert est.labels_.tolist() == recorded["labels"]
    assert [r["loss"] for r in est.history_] == recorded["losses"]
    assert [r.get("acc") for r in est.history_] == recorded["acc"]
