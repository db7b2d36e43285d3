"""The networks as docs/method.md states them: the ResNet and MLP encoders, projection, prototypes and
head."""

import pytest
import torch
from torch import nn

from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder, ResNetEncoder

#: the channels of the first stage of torchvision's ResNets
RESNET_WIDTH = 64


def count_blocks(encoder):
    return [len(stage) for stage in encoder.stages]


@pytest.mark.parametrize(
    "depth, blocks, features",
    [
        ("resnet18", [2, 2, 2, 2], 512),
        ("resnet34", [3, 4, 6, 3], 512),
        ("resnet50", [3, 4, 6, 3], 2048),
    ],
)
def test_resnet_layouts(depth, blocks, features):
    encoder = ResNetEncoder(depth, in_channels=3, width=RESNET_WIDTH)
    assert count_blocks(encoder) == blocks
    assert encoder.out_features == features
    assert encoder(torch.randn(2, 3, 18, 18)).shape == (2, features)


def test_small_image_stem():
    stem = ResNetEncoder("resnet18", 3, RESNET_WIDTH).stem
    conv = stem[0]
    assert (conv.kernel_size, conv.stride, conv.out_channels, conv.bias) == ((3, 3), (1, 1), 64, None)
    assert isinstance(stem[1], nn.BatchNorm2d) and isinstance(stem[3], nn.Identity)
    assert isinstance(ResNetEncoder("resnet18", 3, RESNET_WIDTH, stem_pool=True).stem[3], nn.MaxPool2d)


def test_width_scales_channels_and_grey_input():
    encoder = ResNetEncoder("resnet18", in_channels=1, width=8)
    assert encoder.out_features == 64
    assert encoder(torch.randn(2, 1, 8, 8)).shape == (2, 64)


def make_net(n_clusters=4, n_prototypes=30):
    return IMCSwAVNet(
        ResNetEncoder("resnet18", 3, width=8), n_clusters, n_prototypes, projection_dim=16, head_hidden_dim=32
    )


def test_heads_shapes_and_prototype_normalisation():
    net = make_net()
    with torch.no_grad():
        net.prototypes.weight.mul_(3.0)
    net.normalize_prototypes()
    torch.testing.assert_close(net.prototypes.weight.norm(dim=1), torch.ones(30))
    projection = [m for m in net.projection]
    assert [type(m) for m in projection] == [nn.Linear, nn.Linear]  # no non-linearity between
    assert projection[0].in_features == projection[0].out_features == 64
    head = [nn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else type(m) for m in net.head]
    assert head == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert net.prototypes.bias is None


def test_forward_splits_views_and_scores_are_cosines():
    net = make_net()
    large, small = torch.randn(2 * 5, 3, 12, 12), torch.randn(4 * 5, 3, 8, 8)
    features, scores, logits = net([large, small], batch_size=5)
    assert features.shape == (5, 6, 64) and scores.shape == (6, 5, 30) and logits.shape == (1, 6, 5, 4)
    assert scores.abs().max() <= 1.0 + 1e-5
    # view v of image b: in evaluation mode (no batch statistics) each view's outputs are the network's
    # outputs on that view alone
    net.eval()
    with torch.no_grad():
        features, scores, logits = net([large, small], batch_size=5)
        for v, view in enumerate([*large.split(5), *small.split(5)]):
            torch.testing.assert_close(features[:, v], net.encoder(view))
            torch.testing.assert_close(logits[0, v], net.cluster_logits(view))


def test_forward_without_the_head_returns_no_logits():
    net = make_net()
    features, scores, logits = net([torch.randn(2 * 3, 3, 10, 10)], batch_size=3, head=False)
    assert logits is None and scores.shape == (2, 3, 30) and features.shape == (3, 2, 64)


def test_head_gradient_never_reaches_encoder():
    net = make_net()
    _, _, logits = net([torch.randn(8, 3, 10, 10)], batch_size=4)
    logits.sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.head.parameters())


def test_mlp_encoder():
    encoder = MLPEncoder(7, width=4)
    assert encoder.out_features == 32
    assert encoder(torch.randn(3, 7)).shape == (3, 32)


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet18", 3, width=4)
    x = torch.randn(8, 3, 12, 12)
    results = []
    for checkpointing in (False, True):
        encoder.checkpointing = checkpointing
        encoder.zero_grad()
        out = encoder(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for plain, recomputed in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(plain, recomputed)
    encoder.eval()  # evaluation never checkpoints
    with torch.no_grad():
        assert encoder(x).shape == (8, 32)


def test_one_head_keeps_the_published_layers_and_their_keys():
    net = make_net()
    assert net.n_heads == 1 and net.best_head == 0
    keys = [name for name in net.state_dict() if name.startswith("head.")]
    layers = ("0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias")
    norms = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert set(keys) == {f"head.{k}" for k in layers} | {f"head.{i}.{k}" for i in (1, 4) for k in norms}
    with pytest.raises(ValueError, match="head 1 does not exist"):
        net.select_head(1)


def test_the_chosen_head_predicts():
    torch.manual_seed(0)
    net = IMCSwAVNet(MLPEncoder(5, width=2), 4, 6, projection_dim=3, head_hidden_dim=8, n_heads=3).eval()
    x = torch.randn(7, 5)
    _, _, logits = net([x], batch_size=7)
    assert logits.shape == (3, 1, 7, 4)
    for head in (2, 0, 1):
        net.select_head(head)
        assert net.best_head == head and net.state_dict()["head.best"] == head  # saved with the weights
        torch.testing.assert_close(net.cluster_logits(x), logits[head, 0])
    for head in (-1, 3):
        with pytest.raises(ValueError, match=f"head {head} does not exist: the network has 3"):
            net.select_head(head)
