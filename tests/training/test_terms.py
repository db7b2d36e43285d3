"""The step's loss terms: the SwAV loss of the prototype scores plus, for every head (of every candidate K),
its own mutual-information loss and logit penalty, each computed head by head with the one-head
objectives."""

import pytest
import torch

from imc_cluster.model.objectives import logit_penalty, mutual_information_loss, swav_loss
from imc_cluster.training.terms import loss_terms


@pytest.fixture
def config(training_config):
    # a low threshold, so that the logit penalty is not zero on the random logits below
    return training_config(logit_threshold=0.5, logit_penalty=0.3)


def outputs(seed: int, n_views=4, batch=16, n_prototypes=12, shapes=((3, 5),)):
    """Prototype scores ``(V, B, K')`` and, per shape ``(H, K)``, the logits ``(H, V, B, K)`` of H heads."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_views, batch, n_prototypes, generator=generator)
    logits = [3 * torch.randn(h, n_views, batch, k, generator=generator) for h, k in shapes]
    return scores, logits


def per_head(logits, target, config):
    """Each head's mutual information and the sum of the heads' penalties, one head at a time."""
    mi = torch.stack(
        [mutual_information_loss(head, target, config.temperature, config.marginal_weight) for head in logits]
    )
    reg = sum(logit_penalty(head, config.logit_penalty, config.logit_threshold) for head in logits)
    return mi, reg


def swav(scores, config):
    return swav_loss(
        scores, config.n_large_crops, config.temperature, config.sinkhorn_epsilon, config.sinkhorn_iterations
    )


def test_without_heads_the_loss_is_the_swav_loss(config):
    scores, _ = outputs(0)
    terms = loss_terms(scores, None, config)
    assert set(terms) == {"loss", "swav"}
    torch.testing.assert_close(terms["loss"], swav(scores, config))


@pytest.mark.parametrize("n_heads", [1, 3])
def test_every_head_has_its_own_loss_and_they_sum(config, n_heads):
    scores, (logits,) = outputs(1, shapes=((n_heads, 5),))
    terms = loss_terms(scores, logits, config)
    mi, reg = per_head(logits, scores, config)
    assert float(reg) > 0
    torch.testing.assert_close(terms["mi_heads"], mi)
    torch.testing.assert_close(terms["mi"], mi.sum())
    torch.testing.assert_close(terms["reg"], reg)
    torch.testing.assert_close(terms["loss"], swav(scores, config) + mi.sum() + reg)


def test_candidate_ks_sum_every_head_of_every_candidate(config):
    scores, logits = outputs(2, shapes=((2, 3), (2, 5), (2, 8)))
    terms = loss_terms(scores, logits, config)
    parts = [per_head(group, scores, config) for group in logits]
    mi = torch.stack([part[0] for part in parts])
    reg = sum(part[1] for part in parts)
    assert terms["mi_heads"].shape == (3, 2)
    torch.testing.assert_close(terms["mi_heads"], mi)
    torch.testing.assert_close(terms["loss"], swav(scores, config) + mi.sum() + reg)


def test_the_heads_read_the_banks_scores_and_swav_the_batchs(config):
    scores, (logits,) = outputs(3, shapes=((2, 4),))
    bank_scores, _ = outputs(4)
    terms = loss_terms(scores, logits, config, head_scores=bank_scores)
    mi, _ = per_head(logits, bank_scores, config)
    torch.testing.assert_close(terms["swav"], swav(scores, config))
    torch.testing.assert_close(terms["mi_heads"], mi)
    assert not torch.allclose(mi, per_head(logits, scores, config)[0])


def test_each_heads_gradient_comes_from_its_own_loss(config):
    scores, (logits,) = outputs(5, shapes=((3, 5),))
    logits.requires_grad_()
    loss_terms(scores, logits, config)["loss"].backward()
    for h in range(3):
        head = logits.detach()[h].clone().requires_grad_()
        mi, reg = per_head(head[None], scores, config)
        (mi.sum() + reg).backward()
        torch.testing.assert_close(logits.grad[h], head.grad)
