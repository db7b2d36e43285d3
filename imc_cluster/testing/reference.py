"""The published training step, transcribed from ``docs/method.md`` independently of the package.

- the network (docs/method.md#networks): a plain one built from torchvision's blocks and ``torch.nn``
  layers (no imc-cluster module), run once per view, so that every BatchNorm normalises one view's B
  samples (docs/method.md#per-view-batchnorm);
- the losses (docs/method.md#losses): SwAV's Sinkhorn-Knopp in its published (exponential) form
  (docs/method.md#swav-self-labelling), the mutual information
  (docs/method.md#mutual-information-of-the-cluster-head) and the logit penalty
  (docs/method.md#logit-penalty), pair by pair.

It receives the weights of the model under test through ``state_dict`` (the package's layers keep
torchvision's keys) and must give the same loss, the same gradient of every parameter and the same
BatchNorm running statistics as one call of the package's batched step. This module imports only
``torch`` and ``torchvision``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

#: the published temperature, Sinkhorn epsilon and iterations, marginal weight, penalty weight and threshold
#: (docs/method.md#losses)
TAU, EPS, ITERS, MARGINAL, PENALTY, THRESHOLD = 0.1, 0.05, 3, 4.0, 0.01, 5.0


# ----------------------------------------------------------------------------- reference network


class ReferenceEncoder(nn.Module):
    """``layers`` (MLP), or ``stem`` then ``stages`` and a global average pool (ResNet)."""

    def forward(self, x):
        if hasattr(self, "layers"):
            return self.layers(x)
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def reference_resnet(depth, in_channels, width, stem_pool):
    block, layout = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}[depth]
    encoder = ReferenceEncoder()
    encoder.stem = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2) if stem_pool else nn.Identity(),
    )
    stages, planes_in = [], width
    for i, n in enumerate(layout):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        down = None
        if stride != 1 or planes_in != planes * block.expansion:
            down = nn.Sequential(
                nn.Conv2d(planes_in, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(planes_in, planes, stride, down)]
        planes_in = planes * block.expansion
        blocks += [block(planes_in, planes) for _ in range(n - 1)]
        stages.append(nn.Sequential(*blocks))
    encoder.stages = nn.Sequential(*stages)
    return encoder, planes_in


def reference_mlp(in_features, width):
    hidden = 8 * width
    encoder = ReferenceEncoder()
    encoder.layers = nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
    )
    return encoder, hidden


def reference_network(encoder, d, n_clusters, n_prototypes, projection_dim, hidden):
    net = nn.Module()
    net.encoder = encoder
    net.projection = nn.Sequential(nn.Linear(d, d), nn.Linear(d, projection_dim))
    net.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
    net.head = nn.Sequential(
        nn.Linear(d, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_clusters),
    )
    return net


# ----------------------------------------------------------------------------- reference step


def reference_sinkhorn(u):
    q = torch.exp(u / EPS).t()
    q /= q.sum()
    k, b = q.shape
    for _ in range(ITERS):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


def reference_loss(net, views, n_large, head_rows=None):
    """The published forward and the three losses of docs/method.md#losses, one view at a time."""
    scores, logits = [], []
    for x in views:
        h = net.encoder(x)
        z = F.normalize(net.projection(h), dim=1)
        scores.append(z @ net.prototypes.weight.t())
        logits.append(net.head(h.detach() if head_rows is None else h.detach()[head_rows]))
    swav = []
    for i in range(n_large):
        with torch.no_grad():
            q = reference_sinkhorn(scores[i])
        for v in range(len(views)):
            if v != i:
                swav.append(-(q * F.log_softmax(scores[v] / TAU, dim=1)).sum(dim=1).mean())
    mi, reg = [], []
    for y in logits:
        for u in scores:
            u = u.detach() if head_rows is None else u.detach()[head_rows]
            joint = F.softmax(y, dim=1).t() @ F.softmax(u / TAU, dim=1)
            joint = joint / joint.sum()
            p_y, p_u = joint.sum(dim=1, keepdim=True), joint.sum(dim=0, keepdim=True)
            mi.append((joint * torch.log(p_u / joint)).sum() + MARGINAL * (joint * torch.log(p_y)).sum())
            reg.append(PENALTY * F.relu(y.abs() - THRESHOLD).sum(dim=1).mean())
    return torch.stack(swav).mean() + torch.stack(mi).mean() + torch.stack(reg).mean()


# ----------------------------------------------------------------------------- inputs and comparison


def per_view_inputs(backbone, batch, n_large=2, n_small=4, channels=3, sizes=(28, 18), features=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    if backbone == "mlp":
        return [torch.randn(batch, features, generator=g) for _ in range(n_large + n_small)]
    large = [torch.randn(batch, channels, sizes[0], sizes[0], generator=g) for _ in range(n_large)]
    small = [torch.randn(batch, channels, sizes[1], sizes[1], generator=g) for _ in range(n_small)]
    return large + small


def cosine(a, b):
    return (a.double() * b.double()).sum() / (a.double().norm() * b.double().norm())


#: biases of the linear layers that a BatchNorm follows: their exact gradient is zero
BEFORE_BATCH_NORM = {"head.0.bias", "head.3.bias", "encoder.layers.0.bias", "encoder.layers.3.bias"}
