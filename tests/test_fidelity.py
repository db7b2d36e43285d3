"""The training step against an independent transcription of the published one (SPEC "Losses").

The reference below is written from SPEC.md alone: a plain network built from torchvision's blocks and
``torch.nn`` layers (no imc-cluster module), run once per view, so that every BatchNorm normalises one
view's B samples; SwAV's Sinkhorn-Knopp in its published (exponential) form; the mutual information and
the logit penalty pair by pair. It receives the weights of the model under test through ``state_dict``
and must give the same loss, the same gradient of every parameter and the same BatchNorm running
statistics as one call of our batched step.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from imc_cluster.networks import IMCSwAVNet, MLPEncoder, ResNetEncoder
from imc_cluster.training import Trainer, TrainingConfig

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
    encoder.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2) if stem_pool else nn.Identity())
    stages, planes_in = [], width
    for i, n in enumerate(layout):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        down = None
        if stride != 1 or planes_in != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(planes_in, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(planes_in, planes, stride, down)]
        planes_in = planes * block.expansion
        blocks += [block(planes_in, planes) for _ in range(n - 1)]
        stages.append(nn.Sequential(*blocks))
    encoder.stages = nn.Sequential(*stages)
    return encoder, planes_in


def reference_mlp(in_features, width):
    hidden = 8 * width
    encoder = ReferenceEncoder()
    encoder.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
    return encoder, hidden


def reference_network(encoder, d, n_clusters, n_prototypes, projection_dim, hidden):
    net = nn.Module()
    net.encoder = encoder
    net.projection = nn.Sequential(nn.Linear(d, d), nn.Linear(d, projection_dim))
    net.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
    net.head = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                             nn.Linear(hidden, n_clusters))
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
    """The published forward and the three losses of SPEC, one view at a time."""
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


# ----------------------------------------------------------------------------- the comparison


def build(backbone, n_clusters=10, n_prototypes=1000, projection_dim=128, hidden=1024, width=64, channels=3,
          side=32, features=20):
    torch.manual_seed(0)
    if backbone == "mlp":
        ours, (theirs, d) = MLPEncoder(features, width), reference_mlp(features, width)
    else:
        pool = side >= 64
        ours = ResNetEncoder(backbone, channels, width, stem_pool=pool)
        theirs, d = reference_resnet(backbone, channels, width, pool)
    model = IMCSwAVNet(ours, n_clusters, n_prototypes, projection_dim, hidden)
    reference = reference_network(theirs, d, n_clusters, n_prototypes, projection_dim, hidden)
    reference.load_state_dict(model.state_dict())  # same names: our layers keep torchvision's keys
    with torch.no_grad():  # trained-looking BatchNorm affine parameters, so that no gradient is trivial
        for name, p in model.named_parameters():
            if p.dim() == 1 and ".bias" not in name:
                p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
            elif ".bias" in name:
                p.add_(torch.empty_like(p).uniform_(-0.2, 0.2))
    reference.load_state_dict(model.state_dict())
    return model, reference


def per_view_inputs(backbone, batch, n_large=2, n_small=4, channels=3, sizes=(28, 18), features=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    if backbone == "mlp":
        return [torch.randn(batch, features, generator=g) for _ in range(n_large + n_small)]
    large = [torch.randn(batch, channels, sizes[0], sizes[0], generator=g) for _ in range(n_large)]
    small = [torch.randn(batch, channels, sizes[1], sizes[1], generator=g) for _ in range(n_small)]
    return large + small


def our_step(model, views, n_large, head_mask=None):
    """One call of the trainer's losses on view-major groups, as the training step makes them."""
    config = TrainingConfig(batch_size=views[0].shape[0], n_large_views=n_large)
    trainer = Trainer(model, None, config, torch.Generator().manual_seed(0))
    groups = [torch.cat(views[:n_large])]
    if len(views) > n_large:
        groups.append(torch.cat(views[n_large:]))
    if head_mask is not None:
        trainer.bank_target = int(head_mask.sum())  # this batch fills the bank: one head update on it
    return trainer.losses(groups, views[0].shape[0], head_mask)


def cosine(a, b):
    return (a.double() * b.double()).sum() / (a.double().norm() * b.double().norm())


#: biases of the linear layers that a BatchNorm follows: their exact gradient is zero
BEFORE_BATCH_NORM = {"head.0.bias", "head.3.bias", "encoder.layers.0.bias", "encoder.layers.3.bias"}


def assert_same_gradients(model, reference):
    ours, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, p in ours.items():
        q = theirs[name]
        assert p.grad is not None and q.grad is not None, name
        if name in BEFORE_BATCH_NORM:  # a bias that BatchNorm subtracts again: its gradient is rounding noise
            scale = ours[name.replace("bias", "weight")].grad.norm()
            assert p.grad.norm() < 1e-4 * scale and q.grad.norm() < 1e-4 * scale, name
            continue
        assert q.grad.norm() > 0, name
        assert cosine(p.grad, q.grad) >= 0.99999, (name, cosine(p.grad, q.grad).item())
        torch.testing.assert_close(p.grad.norm(), q.grad.norm(), rtol=1e-3, atol=0)


def assert_same_step(model, reference, views, n_large=2, head_mask=None):
    model.train(), reference.train()
    terms = our_step(model, views, n_large, head_mask)
    terms["loss"].backward()
    expected = reference_loss(reference, views, n_large, None if head_mask is None else head_mask.nonzero()[:, 0])
    expected.backward()
    assert "mi" in terms
    assert abs(terms["loss"].item() - expected.item()) <= 1e-5 * abs(expected.item())
    assert_same_gradients(model, reference)
    ours, theirs = dict(model.named_buffers()), dict(reference.named_buffers())
    for name, buffer in ours.items():  # running statistics as after the published V updates, one per view
        torch.testing.assert_close(buffer, theirs[name], rtol=1e-5, atol=1e-6, msg=name)


def test_default_configuration_equals_published_step():
    """ResNet-18 of width 64, 1000 prototypes, 1024-unit head, 2 x 28 + 4 x 18 crops, B = 32."""
    model, reference = build("resnet18")
    assert_same_step(model, reference, per_view_inputs("resnet18", 32))


@pytest.mark.parametrize("batch", [2, 7, 16])
def test_narrow_resnet_equals_published_step_at_several_batch_sizes(batch):
    model, reference = build("resnet18", n_clusters=5, n_prototypes=30, projection_dim=16, hidden=32, width=8)
    assert_same_step(model, reference, per_view_inputs("resnet18", batch, sizes=(12, 8)))


def test_bottleneck_resnet_with_stem_pool_and_grey_images():
    model, reference = build("resnet50", n_clusters=4, n_prototypes=20, projection_dim=8, hidden=16, width=4,
                             channels=1, side=64)
    assert_same_step(model, reference, per_view_inputs("resnet50", 6, n_large=2, n_small=2, channels=1,
                                                       sizes=(20, 12)))


@pytest.mark.parametrize("batch", [4, 33])
def test_mlp_equals_published_step(batch):
    model, reference = build("mlp", n_clusters=6, n_prototypes=50, projection_dim=16, hidden=64, width=8)
    assert_same_step(model, reference, per_view_inputs("mlp", batch))


def test_three_large_views_and_no_small_ones():
    model, reference = build("mlp", n_clusters=3, n_prototypes=12, projection_dim=8, hidden=16, width=4)
    assert_same_step(model, reference, per_view_inputs("mlp", 9, n_large=3, n_small=0), n_large=3)


@pytest.mark.parametrize("backbone", ["resnet18", "mlp"])
def test_head_mask_equals_published_step_on_the_labelled_images(backbone):
    """Encoder and prototypes learn from every image, the head (MI and penalty) from the masked ones."""
    model, reference = build(backbone, n_clusters=4, n_prototypes=40, projection_dim=16, hidden=32, width=8)
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[0, 3, 4, 8, 11]] = True
    assert_same_step(model, reference, per_view_inputs(backbone, 12, sizes=(12, 8)), head_mask=mask)


def test_joint_normalisation_is_measurably_different():
    """The former behaviour (views of a crop size normalised together) is not the published step: the
    comparison above would catch a regression to it."""
    model, reference = build("resnet18", n_clusters=5, n_prototypes=30, projection_dim=16, hidden=32, width=8)
    model.per_view_norm = False
    views = per_view_inputs("resnet18", 8, sizes=(12, 8))
    loss = our_step(model, views, 2)["loss"].item()
    expected = reference_loss(reference, views, 2).item()
    assert abs(loss - expected) > 1e-3 * abs(expected)


def test_activation_checkpointing_keeps_the_published_gradients():
    model, reference = build("resnet18", n_clusters=5, n_prototypes=30, projection_dim=16, hidden=32, width=8)
    model.encoder.checkpointing = True
    views = per_view_inputs("resnet18", 8, sizes=(12, 8))
    our_step(model, views, 2)["loss"].backward()
    reference_loss(reference, views, 2).backward()
    assert_same_gradients(model, reference)


def test_running_statistics_follow_the_published_sequence_over_steps():
    """Three steps of per-view updates, then evaluation-mode outputs agree (momentum and cumulative)."""
    model, reference = build("mlp", n_clusters=3, n_prototypes=12, projection_dim=8, hidden=16, width=4)
    for step in range(3):
        views = per_view_inputs("mlp", 10, seed=step)
        with torch.no_grad():
            our_step(model, views, 2)
            reference_loss(reference, views, 2)
    for name, buffer in dict(reference.named_buffers()).items():
        torch.testing.assert_close(dict(model.named_buffers())[name], buffer, rtol=1e-5, atol=1e-6, msg=name)
    assert int(model.head[1].num_batches_tracked) == 18
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = None
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = None
    views = per_view_inputs("mlp", 10, seed=7)
    with torch.no_grad():
        our_step(model, views, 2)
        reference_loss(reference, views, 2)
    for name, buffer in dict(reference.named_buffers()).items():
        torch.testing.assert_close(dict(model.named_buffers())[name], buffer, rtol=1e-5, atol=1e-6, msg=name)


def test_channels_last_views_take_the_same_normalisation():
    """Channels-last groups (the GPU layout) go through the layout-independent path: same step."""
    model, reference = build("resnet18", n_clusters=5, n_prototypes=30, projection_dim=16, hidden=32, width=8)
    model = model.to(memory_format=torch.channels_last)
    views = [v.contiguous(memory_format=torch.channels_last) for v in per_view_inputs("resnet18", 6, sizes=(12, 8))]
    assert_same_step(model, reference, views)


def test_prototype_scores_stay_float32_under_bf16_autocast():
    """The scores that Sinkhorn-Knopp and both softmaxes read are computed in float32 under bf16 autocast:
    equal to the float32 product of the (float32) normalised projection and the prototypes."""
    model, _ = build("mlp", n_clusters=3, n_prototypes=500, projection_dim=128, hidden=16, width=16)
    model.train()
    views = per_view_inputs("mlp", 16)
    groups = [torch.cat(views[:2]), torch.cat(views[2:])]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, scores, logits = model(groups, 16)
    assert features.dtype == torch.bfloat16 and logits.dtype == torch.bfloat16  # the networks did run in bf16
    assert scores.dtype == torch.float32
    z = F.normalize(model.projection(features.float()), dim=-1)
    expected = (z @ model.prototypes.weight.t()).transpose(0, 1)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)
    # what the codes would have read with the product in bf16: errors of order 1e-3 in u, 1e-2 in u / eps
    rounded = (z.bfloat16() @ model.prototypes.weight.bfloat16().t()).float().transpose(0, 1)
    assert (rounded - expected).abs().max() / EPS > 1e-2
    assert math.isfinite(our_step(copy.deepcopy(model), views, 2)["loss"].item())


@pytest.mark.parametrize("momentum", [None, 0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("shape, layout", [((5, 6), None), ((5, 6, 3), None), ((5, 6, 4, 3), None),
                                           ((5, 6, 4, 3), torch.channels_last)])
def test_view_batch_norm_equals_plain_batch_norm_run_view_by_view(momentum, shape, layout):
    """Outputs, input gradients, affine gradients and running statistics of one per-view call equal those of
    torch's BatchNorm called on each view in turn, for every momentum (cumulative, 0, 1 included)."""
    from imc_cluster.batchnorm import ViewBatchNorm1d, ViewBatchNorm2d

    n_views, channels = 3, shape[1]
    ours = (ViewBatchNorm2d if len(shape) == 4 else ViewBatchNorm1d)(channels, momentum=momentum)
    plain = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(channels, momentum=momentum)
    with torch.no_grad():
        for module in (ours, plain):
            module.weight.copy_(torch.linspace(0.5, 1.5, channels))
            module.bias.copy_(torch.linspace(-0.2, 0.3, channels))
            module.running_mean.fill_(0.3), module.running_var.fill_(2.0), module.num_batches_tracked.fill_(4)
    torch.manual_seed(0)
    views = [torch.randn(shape) * (v + 1) + v for v in range(n_views)]
    x = torch.stack(views, dim=1).flatten(0, 1)  # image-major
    if layout is not None:
        x = x.contiguous(memory_format=layout)
    x.requires_grad_()
    grad = torch.randn(x.shape)
    out = ours(x, n_views)
    out.backward(grad)
    leaves = [v.clone().requires_grad_() for v in views]
    expected = torch.stack([plain(leaf) for leaf in leaves], dim=1).flatten(0, 1)
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, torch.stack([leaf.grad for leaf in leaves], dim=1).flatten(0, 1),
                               rtol=1e-4, atol=1e-5)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(plain, name).grad, rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(plain, name), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("backbone", ["resnet18", "mlp"])
def test_one_large_view_equals_published_step(backbone):
    """A group of one view (plain BatchNorm) followed by a per-view group in the same layers."""
    model, reference = build(backbone, n_clusters=3, n_prototypes=12, projection_dim=8, hidden=16, width=4)
    assert_same_step(model, reference, per_view_inputs(backbone, 6, n_large=1, n_small=3, sizes=(12, 8)), n_large=1)
