"""The objectives against direct transcriptions of the equations of docs/method.md, with the published
constants; and over a torch.distributed group, where they equal the objectives on the concatenated global
batch (two CPU processes with the gloo backend)."""

import math
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from imc_cluster.model.objectives import (
    logit_penalty,
    mutual_information_loss,
    mutual_information_losses,
    sinkhorn,
    swav_loss,
)


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
    return [
        F.normalize(torch.randn(32, 16), dim=1) @ F.normalize(torch.randn(20, 16), dim=1).t()
        for _ in range(6)
    ]


@pytest.fixture
def method(published):
    """The objectives with the published constants (2 large views of 6 for SwAV)."""
    return objectives_of(published)


def objectives_of(constants: dict) -> SimpleNamespace:
    """:func:`sinkhorn`, :func:`swav_loss`, :func:`mutual_information_loss` and :func:`logit_penalty` with
    ``constants`` (the published ones) filled in."""
    tau, marginal = constants["temperature"], constants["marginal_weight"]
    n_large = constants["n_large_crops"]
    eps, iters = constants["sinkhorn_epsilon"], constants["sinkhorn_iterations"]
    return SimpleNamespace(
        tau=tau,
        eps=eps,
        iters=iters,
        marginal=marginal,
        sinkhorn=lambda scores, group=None: sinkhorn(scores, eps, iters, group),
        swav=lambda scores, n_large=n_large, group=None: swav_loss(scores, n_large, tau, eps, iters, group),
        mi=lambda logits, scores, group=None: mutual_information_loss(logits, scores, tau, marginal, group),
        penalty=lambda logits, weight=constants["logit_penalty"]: logit_penalty(
            logits, weight, constants["logit_threshold"]
        ),
    )


def test_sinkhorn_matches_published_form(scores, method):
    torch.testing.assert_close(
        method.sinkhorn(scores[0]).double(),
        reference_sinkhorn(scores[0], method.eps, method.iters),
        rtol=1e-4,
        atol=1e-7,
    )


def test_sinkhorn_marginals(method):
    torch.manual_seed(1)
    u = F.normalize(torch.randn(64, 8), dim=1) @ F.normalize(torch.randn(16, 8), dim=1).t()
    q = method.sinkhorn(u)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    converged = sinkhorn(u, method.eps, 200)
    torch.testing.assert_close(converged.sum(1), torch.ones(64))
    torch.testing.assert_close(converged.sum(0), torch.full((16,), 64 / 16), rtol=1e-3, atol=1e-3)
    assert (q >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sinkhorn_is_finite_on_extreme_scores(dtype, method):
    u = torch.full((8, 10), -1.0, dtype=dtype)
    u[:, 0] = 1.0  # every sample on one prototype: exp(40) vs exp(-20), the naive form loses rows
    q = method.sinkhorn(u * 50)  # exp(1000) overflows without the log domain
    assert q.dtype == torch.float32 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(8))


def test_sinkhorn_finite_under_bf16_autocast(scores, method):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.swav([s * 30 for s in scores])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_swav_loss_is_mean_of_ten_cross_entropies(scores, method):
    tau, eps = method.tau, method.eps
    expected = []
    for i in range(2):
        q = reference_sinkhorn(scores[i], eps, method.iters)
        for v in range(6):
            if v != i:
                expected.append(-(q * F.log_softmax(scores[v].double() / tau, 1)).sum(1).mean())
    assert len(expected) == 10
    torch.testing.assert_close(
        method.swav(scores).double(), torch.stack(expected).mean(), rtol=1e-4, atol=1e-6
    )


def test_swav_codes_are_constants_in_the_gradient(scores, method):
    views = [s.clone().requires_grad_() for s in scores]
    method.swav(views).backward()
    codes = [reference_sinkhorn(scores[i], method.eps, method.iters).float() for i in range(2)]
    reference = [s.clone().requires_grad_() for s in scores]
    terms = [
        -(codes[i] * F.log_softmax(reference[v] / method.tau, 1)).sum(1).mean()
        for i in range(2)
        for v in range(6)
        if v != i
    ]
    torch.stack(terms).mean().backward()
    for ours, theirs in zip(views, reference):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-3, atol=1e-6)


def test_mutual_information_equals_conditional_entropy_minus_four_marginal_entropies(method):
    torch.manual_seed(2)
    logits = [torch.randn(40, 5) * 3 for _ in range(6)]
    scores = [torch.randn(40, 12) for _ in range(6)]
    expected = torch.stack(
        [reference_mi_term(y, u, method.tau, method.marginal) for y in logits for u in scores]
    ).mean()
    torch.testing.assert_close(method.mi(logits, scores).double(), expected, rtol=1e-4, atol=1e-5)


def test_mutual_information_gradient_reaches_logits_only(method):
    logits = [torch.randn(16, 4, requires_grad=True)]
    scores = [torch.randn(16, 9, requires_grad=True)]
    method.mi(logits, scores).backward()
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0
    assert scores[0].grad is None


def test_mutual_information_rewards_balanced_deterministic_clusters(method):
    u = torch.eye(4).repeat(8, 1) * 10  # 32 samples in 4 prototype groups
    perfect = (torch.eye(4) * 20).repeat(8, 1)
    collapsed = torch.zeros(32, 4)
    collapsed[:, 0] = 20
    best = method.mi([perfect], [u])
    assert best < method.mi([collapsed], [u])
    # the optimum is H(Y|U) - 4 H(Y) = 0 - 4 log 4
    assert best.item() == pytest.approx(-4 * math.log(4), abs=1e-3)


def test_logit_penalty(method):
    y = torch.tensor([[6.0, -7.0, 1.0], [0.0, 5.0, -5.5]])
    # row sums of relu(|y| - 5): 1 + 2 = 3 and 0.5; mean 1.75; two copies of the view keep the mean
    assert method.penalty([y, y], weight=0.01).item() == pytest.approx(0.0175)
    assert method.penalty([torch.zeros(3, 3)]).item() == 0.0


def test_objectives_take_stacked_views_and_batch_sinkhorn_per_view(scores, method):
    stacked = torch.stack(scores)
    logits = torch.randn(6, 32, 4)
    torch.testing.assert_close(method.swav(stacked), method.swav(scores))
    torch.testing.assert_close(method.mi(logits, stacked), method.mi(list(logits), scores))
    torch.testing.assert_close(method.penalty(logits * 10), method.penalty(list(logits * 10)))
    batched = method.sinkhorn(stacked[:2])
    for view in range(2):
        torch.testing.assert_close(batched[view], method.sinkhorn(scores[view]))
    with pytest.raises(ValueError, match="n_views, batch"):
        method.swav(stacked[0])


def test_the_losses_of_several_heads_are_each_heads_loss(scores, method):
    logits = torch.randn(3, 6, 32, 4, generator=torch.Generator().manual_seed(2)) * 3
    losses = mutual_information_losses(logits, scores, method.tau, method.marginal)
    assert losses.shape == (3,)
    for head in range(3):
        expected = torch.stack(
            [reference_mi_term(y, u, method.tau, method.marginal) for y in logits[head] for u in scores]
        ).mean()
        torch.testing.assert_close(losses[head].double(), expected, rtol=1e-4, atol=1e-5)
    # one head: the one-head loss, to the bit (the published method's fits do not change)
    one = mutual_information_losses(logits[1:2], scores, method.tau, method.marginal)
    assert torch.equal(one[0], method.mi(logits[1], scores))


# ------------------------------------------------------------------ over a torch.distributed group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def global_inputs():
    generator = torch.Generator().manual_seed(0)
    scores = [torch.randn(16, 12, generator=generator).tanh() for _ in range(3)]
    logits = [torch.randn(16, 4, generator=generator) * 3 for _ in range(3)]
    return scores, logits


def worker(rank: int, port: int, constants: dict, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        scores, logits = global_inputs()
        rows = slice(8 * rank, 8 * (rank + 1))
        local_scores = [s[rows] for s in scores]
        local_logits = [y[rows].clone().requires_grad_() for y in logits]
        group, method = dist.group.WORLD, objectives_of(constants)
        codes = method.sinkhorn(local_scores[0], group=group)
        swav = method.swav(local_scores, n_large=1, group=group)
        mi = method.mi(local_logits, local_scores, group=group)
        mi.backward()
        results[rank] = (codes, swav.detach(), mi.detach(), [y.grad for y in local_logits])
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_the_global_batch(method, published, spawn):
    with mp.Manager() as manager:
        results = manager.dict()
        spawn(worker, (free_port(), published, results), nprocs=2)
        results = dict(results)
    scores, logits = global_inputs()
    logits = [y.clone().requires_grad_() for y in logits]
    codes = method.sinkhorn(scores[0])
    mi = method.mi(logits, scores)
    mi.backward()
    torch.testing.assert_close(torch.cat([results[0][0], results[1][0]]), codes)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][2], mi.detach())
        # each process gets world_size times its rows' share of the global gradient, which the averaging
        # of gradients across processes (DistributedDataParallel) turns into the global gradient
        for local, full in zip(results[rank][3], logits):
            torch.testing.assert_close(local, 2 * full.grad[8 * rank : 8 * (rank + 1)], rtol=1e-4, atol=1e-6)
    # the SwAV loss is a per-sample mean: the two local means average to the global one
    global_swav = method.swav(scores, n_large=1)
    torch.testing.assert_close((results[0][1] + results[1][1]) / 2, global_swav)
