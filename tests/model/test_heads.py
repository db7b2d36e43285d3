"""Several cluster heads in one batched computation: each is the published head (docs/method.md#networks)
with its own weights, normalising each view on its own in training."""

import math

import torch
from torch import nn

from imc_cluster.model.heads import ClusterHeads

FEATURES, HIDDEN, CLUSTERS, HEADS, IMAGES, VIEWS = 6, 8, 4, 3, 10, 2


def published_head() -> nn.Sequential:
    """The published cluster head, from torch.nn alone: Linear, BN, ReLU, Linear, BN, ReLU, Linear."""
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN),
        nn.BatchNorm1d(HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.BatchNorm1d(HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLUSTERS),
    )


def heads_and_single_copies() -> tuple[ClusterHeads, list[nn.Sequential]]:
    """Batched heads (BatchNorm scales and shifts moved off 1 and 0), and each head as a published head of
    the same weights."""
    torch.manual_seed(0)
    heads = ClusterHeads(FEATURES, HIDDEN, CLUSTERS, HEADS)
    with torch.no_grad():
        for norm in (heads.norm1, heads.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    singles = []
    for head in range(HEADS):
        rows = slice(head * HIDDEN, (head + 1) * HIDDEN)
        single = published_head()
        with torch.no_grad():
            single[0].weight.copy_(heads.input.weight[rows])
            single[0].bias.copy_(heads.input.bias[rows])
            for norm, batched in ((single[1], heads.norm1), (single[4], heads.norm2)):
                norm.weight.copy_(batched.weight[rows])
                norm.bias.copy_(batched.bias[rows])
            for linear, batched in ((single[3], heads.middle), (single[6], heads.output)):
                linear.weight.copy_(batched.weight[head].t())
                linear.bias.copy_(batched.bias[head])
        singles.append(single)
    return heads, singles


def image_major_features() -> torch.Tensor:
    """``IMAGES * VIEWS`` features, sample ``b * VIEWS + v`` being view ``v`` of image ``b``."""
    return torch.randn(IMAGES * VIEWS, FEATURES, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def test_each_head_is_a_published_head_normalising_each_view_on_its_own():
    heads, singles = heads_and_single_copies()
    x = image_major_features()
    out = heads(x, VIEWS)
    assert out.shape == (HEADS, IMAGES * VIEWS, CLUSTERS)
    out.square().sum().backward()
    for head, single in enumerate(singles):
        views = [single(x.unflatten(0, (IMAGES, VIEWS))[:, v]) for v in range(VIEWS)]  # one pass per view
        torch.testing.assert_close(out[head].unflatten(0, (IMAGES, VIEWS)), torch.stack(views, dim=1))
        torch.stack(views).square().sum().backward()
        rows = slice(head * HIDDEN, (head + 1) * HIDDEN)
        pairs = [
            (heads.input.weight.grad[rows], single[0].weight.grad),
            (heads.norm1.weight.grad[rows], single[1].weight.grad),
            (heads.norm2.bias.grad[rows], single[4].bias.grad),
            (heads.middle.weight.grad[head].t(), single[3].weight.grad),
            (heads.output.weight.grad[head].t(), single[6].weight.grad),
            (heads.output.bias.grad[head], single[6].bias.grad),
            (heads.norm1.running_mean[rows], single[1].running_mean),
            (heads.norm2.running_var[rows], single[4].running_var),
        ]
        for batched, alone in pairs:
            torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_in_evaluation_each_head_is_its_published_head():
    heads, singles = heads_and_single_copies()
    x = image_major_features()
    with torch.no_grad():
        heads(x, VIEWS)  # running statistics away from their initial values
        for single in singles:
            for v in range(VIEWS):
                single(x.unflatten(0, (IMAGES, VIEWS))[:, v])
    heads.eval()
    with torch.no_grad():
        out = heads(x)
        for head, single in enumerate(singles):
            torch.testing.assert_close(out[head], single.eval()(x))


def test_every_head_is_initialised_on_its_own_as_a_linear_layer():
    torch.manual_seed(0)
    heads = ClusterHeads(FEATURES, 64, CLUSTERS, HEADS)
    for weights, fan_in in ((heads.middle.weight, 64), (heads.output.weight, 64)):
        bound = 1 / math.sqrt(fan_in)
        assert weights.abs().max() <= bound and weights.abs().max() > 0.9 * bound  # nn.Linear's rule
        assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    first = heads.input.weight.unflatten(0, (HEADS, 64))
    assert first.abs().max() <= 1 / math.sqrt(FEATURES) and not torch.equal(first[0], first[1])
    assert int(heads.best) == 0
