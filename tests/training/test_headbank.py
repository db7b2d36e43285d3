"""The STL-10 head bank: the cluster head learns from labelled images only, over at least a batch size of
them gathered over consecutive batches."""

import numpy as np
import pytest
import torch

from imc_cluster.training.headbank import HeadBank
from imc_cluster.training.trainer import Trainer


def recorded_fit(monkeypatch, n_samples, labelled, batch_size, epochs=1, n_heads=1):
    """Fit an MLP with ``n_heads`` cluster heads on vectors with ``labelled`` samples in the head mask;
    record every epoch's index batches, every batch's features (as ``embed`` returns them) and every
    training input of the heads."""
    from imc_cluster import IMCSwAVClustering
    from imc_cluster.model.networks import IMCSwAVNet

    seen = {"batches": [], "features": [], "head_inputs": []}
    epoch_batches, embed = Trainer.epoch_batches, IMCSwAVNet.embed

    def recording_batches(self, *args):
        seen["batches"].extend(batches := epoch_batches(self, *args))
        return batches

    def recording_embed(self, views, batch_size):
        seen["features"].append(features := embed(self, views, batch_size))
        return features

    monkeypatch.setattr(Trainer, "epoch_batches", recording_batches)
    monkeypatch.setattr(IMCSwAVNet, "embed", recording_embed)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, 6)).astype(np.float32)
    mask = np.zeros(n_samples, bool)
    mask[rng.choice(n_samples, labelled, replace=False)] = True
    est = IMCSwAVClustering(
        3,
        backbone_width=2,
        n_prototypes=8,
        projection_dim=4,
        head_hidden_dim=8,
        n_heads=n_heads,
        batch_size=batch_size,
        max_epochs=epochs,
        warmup_updates=1,
        bn_recalibration_batches=0,
        random_state=0,
    )
    monkeypatch.setattr(IMCSwAVNet, "__init__", _recording_head(IMCSwAVNet.__init__, seen["head_inputs"]))
    est.fit(X, head_mask=mask)
    return est, mask, seen


def _recording_head(init, inputs):
    """``IMCSwAVNet.__init__`` that also records, in ``inputs``, every training input of the network's
    head."""

    def init_and_hook(model, *args, **kwargs):
        init(model, *args, **kwargs)
        model.head.register_forward_pre_hook(
            lambda module, args: inputs.append(args[0].detach().clone()) if module.training else None
        )

    return init_and_hook


@pytest.mark.parametrize("n_heads", [1, 3])
def test_head_updates_see_a_batch_of_labelled_samples_and_no_unlabelled_one(monkeypatch, n_heads):
    """5% labelled, batch 32: each update of the heads runs on >= 32 labelled samples gathered over
    consecutive batches, exactly the labelled rows of those batches' features, and nothing else."""
    est, mask, seen = recorded_fit(monkeypatch, n_samples=1280, labelled=64, batch_size=32, n_heads=n_heads)
    assert len(seen["features"]) == len(seen["batches"]) == 40
    banked, window = [], []
    for index, features in zip(seen["batches"], seen["features"]):
        rows = torch.from_numpy(mask)[index]
        window.append(features.detach()[rows])
        if sum(len(w) for w in window) >= 32:
            banked.append(torch.cat(window))
            window = []
    assert len(seen["head_inputs"]) == len(banked) >= 1
    for head_input, expected in zip(seen["head_inputs"], banked):
        assert head_input.shape[0] >= 32 * 6  # >= batch size images, 6 views each
        torch.testing.assert_close(head_input, expected.flatten(0, 1), rtol=0, atol=0)
    record = est.history_[0]
    assert record["mi"] < 0 and len(record["mi_heads"]) == n_heads  # means over the heads' updates
    assert sum(record["mi_heads"]) == pytest.approx(record["mi"], rel=1e-5)
    assert est.best_head_ == record["best_head"] == np.argmin(record["mi_heads"])


def test_head_updates_when_fewer_samples_are_labelled_than_a_batch(monkeypatch):
    """3 labelled samples in all: every epoch still makes one head update, on all of them."""
    est, _, seen = recorded_fit(monkeypatch, n_samples=96, labelled=3, batch_size=32, epochs=2)
    assert [len(x) for x in seen["head_inputs"]] == [3 * 6, 3 * 6]
    assert all(np.isfinite(record["mi"]) and record["mi"] != 0 for record in est.history_)


def test_head_bank_holds_the_masked_rows_in_order():
    bank = HeadBank()
    features, scores = torch.randn(5, 3, 4), torch.randn(3, 5, 7)
    bank.add(features, scores, torch.tensor([True, False, True, False, False]))
    bank.add(features * 2, scores * 2, torch.tensor([False, False, False, False, True]))
    assert bank.size == 3
    held_features, held_scores = bank.take()
    torch.testing.assert_close(held_features, torch.stack([features[0], features[2], 2 * features[4]]))
    torch.testing.assert_close(
        held_scores, torch.stack([scores[:, 0], scores[:, 2], 2 * scores[:, 4]], dim=1)
    )
    assert bank.size == 0 and not held_features.requires_grad
