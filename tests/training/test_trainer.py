"""The trainer: the optimisation schedule (warm-up, frozen prototypes, milestones), the optimiser, divergence,
and batches larger than the data."""

import numpy as np
import pytest
import torch

from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder
from imc_cluster.training.trainer import DivergenceError, Trainer


def vector_views(batch, generator):
    noise = torch.randn(batch.repeat(3, 1).shape, generator=generator)
    return [batch.repeat(3, 1) + 0.1 * noise]


@pytest.fixture
def make_trainer(training_config):
    """Factory of trainers of a tiny MLP network on batches of 8 vectors, with the published settings that
    keyword arguments do not override."""

    def make(**config):
        torch.manual_seed(0)
        model = IMCSwAVNet(
            MLPEncoder(6, width=2), n_clusters=3, n_prototypes=8, projection_dim=4, head_hidden_dim=8
        )
        cfg = training_config(batch_size=8, n_large_crops=2, **config)
        return Trainer(model, vector_views, cfg, torch.Generator().manual_seed(0))

    return make


def test_prototypes_frozen_during_warmup(make_trainer):
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


def test_learning_rate_schedule(make_trainer, published):
    """The published schedule: 500 warm-up updates up to 5e-4, then x0.4 at epochs 150, 300 and 400."""
    trainer = make_trainer()
    top = published["learning_rate"]
    assert trainer.learning_rate() == pytest.approx(top / 500)
    trainer.updates = 249
    assert trainer.learning_rate() == pytest.approx(top / 2)
    trainer.updates, trainer.epoch = 10_000, 149
    assert trainer.learning_rate() == pytest.approx(top)
    for epoch, factor in [(150, 0.4), (299, 0.4), (300, 0.16), (400, 0.064), (499, 0.064)]:
        trainer.epoch = epoch
        assert trainer.learning_rate() == pytest.approx(top * factor)


def test_optimizer_is_adam_with_spec_settings(make_trainer, published):
    group = make_trainer().optimizer.param_groups[0]
    assert type(make_trainer().optimizer) is torch.optim.Adam
    assert group["betas"] == published["betas"] and group["weight_decay"] == published["weight_decay"]


def test_divergence_names_epoch_and_step(make_trainer):
    trainer = make_trainer(warmup_updates=0)
    data = torch.randn(24, 6)
    data[9] = float("nan")  # lands in one of the three batches of the second epoch
    trainer.train_epoch(torch.randn(24, 6))
    with pytest.raises(DivergenceError, match=r"epoch 2, step [123] of 3"):
        trainer.train_epoch(data)


def test_losses_finite_under_bf16_autocast(make_trainer):
    trainer = make_trainer()
    trainer.autocast_dtype = torch.bfloat16
    terms = trainer.losses(vector_views(torch.randn(8, 6), torch.Generator().manual_seed(1)), 8)
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in terms.values())


def test_weights_that_become_non_finite_stop_the_epoch(make_trainer):
    trainer = make_trainer(warmup_updates=0, learning_rate=float("inf"))
    with pytest.raises(DivergenceError, match="weights became NaN or infinite in epoch 1"):
        trainer.train_epoch(torch.randn(8, 6))  # one step: its loss is finite, its update is not


def test_several_heads_train_on_their_own_losses_and_the_best_predicts(training_config, monkeypatch):
    """3 heads, one step per epoch: the record holds every head's loss (their sum is "mi"), the best head is
    the one of the lowest, and its progress measures are those of the step's logits."""
    torch.manual_seed(0)
    model = IMCSwAVNet(
        MLPEncoder(6, width=2), 3, n_prototypes=8, projection_dim=4, head_hidden_dim=8, n_heads=3
    )
    cfg = training_config(batch_size=8, n_large_crops=2, warmup_updates=0)
    trainer = Trainer(model, vector_views, cfg, torch.Generator().manual_seed(0))
    seen, objectives = [], trainer.objectives

    def recording(scores, logits, *rest):
        seen.append(logits.detach())
        return objectives(scores, logits, *rest)

    monkeypatch.setattr(trainer, "objectives", recording)
    data = torch.randn(8, 6)
    for _ in range(3):
        record = trainer.train_epoch(data)
        heads = record["mi_heads"]
        assert len(heads) == 3 and sum(heads) == pytest.approx(record["mi"], rel=1e-5)
        assert record["best_head"] == min(range(3), key=heads.__getitem__) == model.best_head
        large = torch.softmax(seen[-1][record["best_head"], :2].double(), dim=-1)
        clusters = large.argmax(dim=-1)
        assert record["confidence"] == pytest.approx(large.max(dim=-1).values.mean().item(), rel=1e-5)
        assert record["agreement"] == (clusters[0] == clusters[1]).double().mean().item()
        assert record["clusters_used"] == len(set(clusters.flatten().tolist()))
    with torch.no_grad():
        _, _, logits = model.eval()([data], 8)
        torch.testing.assert_close(model.cluster_logits(data), logits[model.best_head, 0])


def images(n=12, shape=(8, 8, 3), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, size=(n, *shape)).astype(dtype)


def test_batch_larger_than_the_data_still_trains(tiny):
    est = tiny(batch_size=500).fit(images())
    assert est.history_[0]["updates"] == 1 and est.labels_.shape == (12,)


def test_candidate_ks_train_every_head_of_every_candidate(training_config):
    """Candidates (2, 4) of 2 heads: "mi" is the sum of the four heads' losses, the record holds them per
    candidate, and every candidate's best head is selected."""
    torch.manual_seed(0)
    model = IMCSwAVNet(
        MLPEncoder(6, width=2), (2, 4), n_prototypes=8, projection_dim=4, head_hidden_dim=8, n_heads=2
    )
    cfg = training_config(batch_size=8, n_large_crops=2, warmup_updates=0)
    trainer = Trainer(model, vector_views, cfg, torch.Generator().manual_seed(0))
    start = [group.output.weight.detach().clone() for group in model.head.groups]
    record = trainer.train_epoch(torch.randn(8, 6))
    heads = record["mi_heads"]
    assert [len(group) for group in heads] == [2, 2]
    assert sum(map(sum, heads)) == pytest.approx(record["mi"], rel=1e-5)
    assert (
        record["best_head"] == [min(range(2), key=group.__getitem__) for group in heads] == model.best_heads
    )
    assert len(record["clusters_used"]) == 2 and all(
        1 <= used <= k for used, k in zip(record["clusters_used"], (2, 4))
    )
    moved = [not torch.equal(a, group.output.weight) for a, group in zip(start, model.head.groups)]
    assert moved == [True, True]
