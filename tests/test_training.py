"""The optimisation schedule: warm-up, frozen prototypes, milestones, divergence."""

import numpy as np
import pytest
import torch

from imc_cluster.networks import IMCSwAVNet, MLPEncoder
from imc_cluster.training import DivergenceError, HeadBank, Trainer, TrainingConfig


def vector_views(batch, generator):
    noise = torch.randn(batch.repeat(3, 1).shape, generator=generator)
    return [batch.repeat(3, 1) + 0.1 * noise]


def make_trainer(**config):
    torch.manual_seed(0)
    model = IMCSwAVNet(MLPEncoder(6, width=2), n_clusters=3, n_prototypes=8, projection_dim=4, head_hidden_dim=8)
    cfg = TrainingConfig(batch_size=8, n_large_views=2, **config)
    return Trainer(model, vector_views, cfg, torch.Generator().manual_seed(0))


def test_prototypes_frozen_during_warmup():
    trainer = make_trainer(warmup_updates=3)
    data = torch.randn(16, 6)
    start = trainer.model.prototypes.weight.detach().clone()
    encoder_start = [p.detach().clone() for p in trainer.model.encoder.parameters()]
    trainer.train_epoch(data)  # 2 updates
    # only the per-step re-normalisation touches them (float rounding)
    torch.testing.assert_close(trainer.model.prototypes.weight, start, rtol=0, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(encoder_start, trainer.model.encoder.parameters()))
    trainer.train_epoch(data)  # updates 3 (still warm-up) and 4 (first prototype update)
    assert (trainer.model.prototypes.weight - start).abs().max() > 1e-4


def test_learning_rate_schedule():
    trainer = make_trainer(warmup_updates=500, lr_milestones=(150, 300, 400), lr_gamma=0.4)
    assert trainer.learning_rate() == pytest.approx(5e-4 / 500)
    trainer.updates = 249
    assert trainer.learning_rate() == pytest.approx(5e-4 / 2)
    trainer.updates, trainer.epoch = 10_000, 149
    assert trainer.learning_rate() == pytest.approx(5e-4)
    for epoch, factor in [(150, 0.4), (299, 0.4), (300, 0.16), (400, 0.064), (499, 0.064)]:
        trainer.epoch = epoch
        assert trainer.learning_rate() == pytest.approx(5e-4 * factor)


def test_optimizer_is_adam_with_spec_settings():
    group = make_trainer().optimizer.param_groups[0]
    assert type(make_trainer().optimizer) is torch.optim.Adam
    assert group["betas"] == (0.8, 0.999) and group["weight_decay"] == 1e-5


def test_divergence_names_epoch_and_step():
    trainer = make_trainer(warmup_updates=0)
    data = torch.randn(24, 6)
    data[9] = float("nan")  # lands in one of the three batches of the second epoch
    trainer.train_epoch(torch.randn(24, 6))
    with pytest.raises(DivergenceError, match=r"epoch 2, step [123] of 3"):
        trainer.train_epoch(data)


def test_losses_finite_under_bf16_autocast():
    trainer = make_trainer()
    trainer.autocast_dtype = torch.bfloat16
    terms = trainer.losses(vector_views(torch.randn(8, 6), torch.Generator().manual_seed(1)), 8)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms.values())


def test_batch_norm_recalibration_is_the_plain_average_over_batches_of_a_seeded_order():
    from torch import nn

    from imc_cluster.batchnorm import recalibrate_batch_norm

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(3)

        def cluster_logits(self, x):
            return self.norm(x)

    data = torch.randn(35, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, 5.0, -1.0])
    model = Net()
    recalibrate_batch_norm(model, data, lambda batch: batch * 2, batch_size=10, n_batches=50, seed=7,
                           device=torch.device("cpu"))
    batches = (data[torch.randperm(35, generator=torch.Generator().manual_seed(7))][:30] * 2).split(10)
    torch.testing.assert_close(model.norm.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    # unbiased, as BatchNorm tracks it
    torch.testing.assert_close(model.norm.running_var, torch.stack([b.var(0) for b in batches]).mean(0))
    assert model.norm.momentum == 0.1 and not model.training
    again = Net()
    recalibrate_batch_norm(again, data, lambda batch: batch * 2, batch_size=10, n_batches=2, seed=8,
                           device=torch.device("cpu"))
    assert int(again.norm.num_batches_tracked) == 2
    assert not torch.equal(again.norm.running_var, model.norm.running_var)


def test_weights_that_become_non_finite_stop_the_epoch():
    trainer = make_trainer(warmup_updates=0, learning_rate=float("inf"))
    with pytest.raises(DivergenceError, match="weights became NaN or infinite in epoch 1"):
        trainer.train_epoch(torch.randn(8, 6))  # one step: its loss is finite, its update is not


# ------------------------------------------------------------------ STL-10: the head bank


def recorded_fit(monkeypatch, n_samples, labelled, batch_size, epochs=1):
    """Fit an MLP on vectors with ``labelled`` samples in the head mask; record every epoch's index
    batches, every batch's features (as ``embed`` returns them) and every training input of the head."""
    from imc_cluster import IMCSwAVClustering, config
    from imc_cluster.networks import IMCSwAVNet

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
    est = IMCSwAVClustering(3, backbone_width=2, n_prototypes=8, projection_dim=4, head_hidden_dim=8,
                            batch_size=batch_size, max_epochs=epochs, warmup_updates=1,
                            bn_recalibration_batches=0, random_state=0)
    monkeypatch.setattr(config, "build_network", _recording_head(config.build_network, seen["head_inputs"]))
    est.fit(X, head_mask=mask)
    return est, mask, seen


def _recording_head(build, inputs):
    def build_and_hook(*args, **kwargs):
        model = build(*args, **kwargs)
        model.head.register_forward_pre_hook(
            lambda module, args: inputs.append(args[0].detach().clone()) if module.training else None)
        return model
    return build_and_hook


def test_head_updates_see_a_batch_of_labelled_samples_and_no_unlabelled_one(monkeypatch):
    """5% labelled, batch 32: each head update runs on >= 32 labelled samples gathered over consecutive
    batches, exactly the labelled rows of those batches' features, and nothing else."""
    est, mask, seen = recorded_fit(monkeypatch, n_samples=1280, labelled=64, batch_size=32)
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
    assert est.history_[0]["mi"] < 0  # means over the head's updates, not diluted by the other steps


def test_head_updates_when_fewer_samples_are_labelled_than_a_batch(monkeypatch):
    """3 labelled samples in all: every epoch still makes one head update, on all of them."""
    est, mask, seen = recorded_fit(monkeypatch, n_samples=96, labelled=3, batch_size=32, epochs=2)
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
    torch.testing.assert_close(held_scores, torch.stack([scores[:, 0], scores[:, 2], 2 * scores[:, 4]], dim=1))
    assert bank.size == 0 and not held_features.requires_grad
