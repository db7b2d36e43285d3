"""The training step against an independent transcription of the published one (docs/method.md#losses).

The reference (:mod:`imc_cluster.testing.reference`) is written from docs/method.md alone: a plain network
built from torchvision's blocks and ``torch.nn`` layers (no imc-cluster module), run once per view, so that
every BatchNorm normalises one view's B samples; SwAV's Sinkhorn-Knopp in its published (exponential) form;
the mutual information and the logit penalty pair by pair. It receives the weights of the model under test
through ``state_dict`` and must give the same loss, the same gradient of every parameter and the same
BatchNorm running statistics as one call of our batched step.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imc_cluster.testing.pairing import build, our_step
from imc_cluster.testing.reference import BEFORE_BATCH_NORM, EPS, cosine, per_view_inputs, reference_loss


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
    expected = reference_loss(
        reference, views, n_large, None if head_mask is None else head_mask.nonzero()[:, 0]
    )
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
    model, reference = build(
        "resnet50", n_clusters=4, n_prototypes=20, projection_dim=8, hidden=16, width=4, channels=1, side=64
    )
    assert_same_step(
        model, reference, per_view_inputs("resnet50", 6, n_large=2, n_small=2, channels=1, sizes=(20, 12))
    )


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
    views = [
        v.contiguous(memory_format=torch.channels_last) for v in per_view_inputs("resnet18", 6, sizes=(12, 8))
    ]
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
@pytest.mark.parametrize(
    "shape, layout",
    [((5, 6), None), ((5, 6, 3), None), ((5, 6, 4, 3), None), ((5, 6, 4, 3), torch.channels_last)],
)
def test_view_batch_norm_equals_plain_batch_norm_run_view_by_view(momentum, shape, layout):
    """Outputs, input gradients, affine gradients and running statistics of one per-view call equal those of
    torch's BatchNorm called on each view in turn, for every momentum (cumulative, 0, 1 included)."""
    from imc_cluster.model.batchnorm import ViewBatchNorm1d, ViewBatchNorm2d

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
    torch.testing.assert_close(
        x.grad, torch.stack([leaf.grad for leaf in leaves], dim=1).flatten(0, 1), rtol=1e-4, atol=1e-5
    )
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(plain, name).grad, rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(plain, name), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("backbone", ["resnet18", "mlp"])
def test_one_large_view_equals_published_step(backbone):
    """A group of one view (plain BatchNorm) followed by a per-view group in the same layers."""
    model, reference = build(backbone, n_clusters=3, n_prototypes=12, projection_dim=8, hidden=16, width=4)
    assert_same_step(
        model, reference, per_view_inputs(backbone, 6, n_large=1, n_small=3, sizes=(12, 8)), n_large=1
    )
