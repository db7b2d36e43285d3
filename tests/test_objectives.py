"""The objectives against direct transcriptions of the SPEC equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from imc_cluster.objectives import logit_penalty, mutual_information_loss, sinkhorn, swav_loss


def reference_sinkhorn(scores, eps, iters):
    """SwAV's published form: exponentiate, then alternate prototype and sample normalisation."""
    q = torch.exp(scores.double() / eps).t()  # K' x B
    q /= q.sum()
    n_prototypes, batch = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= batch
    return (q * batch).t()


def reference_mi_term(y, u, tau, b):
    """H(Y|U) - b H(Y) written with explicit entropies."""
    joint = F.softmax(y.double(), 1).t() @ F.softmax(u.double() / tau, 1)
    joint = joint / joint.sum()
    p_y, p_u = joint.sum(1), joint.sum(0)
    h_y_given_u = -(joint * torch.log(joint / p_u[None, :])).sum()
    h_y = -(p_y * torch.log(p_y)).sum()
    return h_y_given_u - b * h_y


@pytest.fixture
def scores():
    torch.manual_seed(0)
    return [F.normalize(torch.randn(32, 16), dim=1) @ F.normalize(torch.randn(20, 16), dim=1).t()
            for _ in range(6)]


def test_sinkhorn_matches_published_form(scores):
    torch.testing.assert_close(sinkhorn(scores[0], 0.05, 3).double(), reference_sinkhorn(scores[0], 0.05, 3),
                               rtol=1e-4, atol=1e-7)


def test_sinkhorn_marginals():
    torch.manual_seed(1)
    u = F.normalize(torch.randn(64, 8), dim=1) @ F.normalize(torch.randn(16, 8), dim=1).t()
    q = sinkhorn(u, 0.05, 3)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    converged = sinkhorn(u, 0.05, 200)
    torch.testing.assert_close(converged.sum(1), torch.ones(64))
    torch.testing.assert_close(converged.sum(0), torch.full((16,), 64 / 16), rtol=1e-3, atol=1e-3)
    assert (q >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sinkhorn_is_finite_on_extreme_scores(dtype):
    u = torch.full((8, 10), -1.0, dtype=dtype)
    u[:, 0] = 1.0  # every sample on one prototype: exp(40) vs exp(-20), the naive form loses rows
    q = sinkhorn(u * 50, 0.05, 3)  # exp(1000) overflows without the log domain
    assert q.dtype == torch.float32 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(8))


def test_sinkhorn_finite_under_bf16_autocast(scores):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = swav_loss([s * 30 for s in scores])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_swav_loss_is_mean_of_ten_cross_entropies(scores):
    tau, eps = 0.1, 0.05
    expected = []
    for i in range(2):
        q = reference_sinkhorn(scores[i], eps, 3)
        for v in range(6):
            if v != i:
                expected.append(-(q * F.log_softmax(scores[v].double() / tau, 1)).sum(1).mean())
    assert len(expected) == 10
    torch.testing.assert_close(swav_loss(scores).double(), torch.stack(expected).mean(), rtol=1e-4, atol=1e-6)


def test_swav_codes_are_constants_in_the_gradient(scores):
    views = [s.clone().requires_grad_() for s in scores]
    swav_loss(views).backward()
    codes = [reference_sinkhorn(scores[i], 0.05, 3).float() for i in range(2)]
    reference = [s.clone().requires_grad_() for s in scores]
    terms = [-(codes[i] * F.log_softmax(reference[v] / 0.1, 1)).sum(1).mean()
             for i in range(2) for v in range(6) if v != i]
    torch.stack(terms).mean().backward()
    for ours, theirs in zip(views, reference):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-3, atol=1e-6)


def test_mutual_information_equals_conditional_entropy_minus_four_marginal_entropies():
    torch.manual_seed(2)
    logits = [torch.randn(40, 5) * 3 for _ in range(6)]
    scores = [torch.randn(40, 12) for _ in range(6)]
    expected = torch.stack([reference_mi_term(y, u, 0.1, 4.0) for y in logits for u in scores]).mean()
    torch.testing.assert_close(mutual_information_loss(logits, scores).double(), expected, rtol=1e-4, atol=1e-5)


def test_mutual_information_gradient_reaches_logits_only():
    logits = [torch.randn(16, 4, requires_grad=True)]
    scores = [torch.randn(16, 9, requires_grad=True)]
    mutual_information_loss(logits, scores).backward()
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0
    assert scores[0].grad is None


def test_mutual_information_rewards_balanced_deterministic_clusters():
    u = torch.eye(4).repeat(8, 1) * 10  # 32 samples in 4 prototype groups
    perfect = (torch.eye(4) * 20).repeat(8, 1)
    collapsed = torch.zeros(32, 4)
    collapsed[:, 0] = 20
    best = mutual_information_loss([perfect], [u])
    assert best < mutual_information_loss([collapsed], [u])
    # the optimum is H(Y|U) - 4 H(Y) = 0 - 4 log 4
    assert best.item() == pytest.approx(-4 * math.log(4), abs=1e-3)


def test_logit_penalty():
    y = torch.tensor([[6.0, -7.0, 1.0], [0.0, 5.0, -5.5]])
    # row sums of relu(|y| - 5): 1 + 2 = 3 and 0.5; mean 1.75; two copies of the view keep the mean
    assert logit_penalty([y, y], weight=0.01).item() == pytest.approx(0.0175)
    assert logit_penalty([torch.zeros(3, 3)]).item() == 0.0


def test_objectives_take_stacked_views_and_batch_sinkhorn_per_view(scores):
    stacked = torch.stack(scores)
    logits = torch.randn(6, 32, 4)
    torch.testing.assert_close(swav_loss(stacked), swav_loss(scores))
    torch.testing.assert_close(mutual_information_loss(logits, stacked), mutual_information_loss(list(logits), scores))
    torch.testing.assert_close(logit_penalty(logits * 10), logit_penalty(list(logits * 10)))
    batched = sinkhorn(stacked[:2])
    for view in range(2):
        torch.testing.assert_close(batched[view], sinkhorn(scores[view]))
    with pytest.raises(ValueError, match="n_views, batch"):
        swav_loss(stacked[0])
