"""The package's side of the fidelity comparison: its network with the weights of the reference of
:mod:`imc_cluster.testing.reference`, and one call of its trainer's losses on the reference's views.

This module imports the package's network, trainer and default settings, since they are what is
compared; the reference itself never imports them.
"""

import torch

from imc_cluster.estimator.components import training_config
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder, ResNetEncoder
from imc_cluster.testing.reference import reference_mlp, reference_network, reference_resnet
from imc_cluster.training.trainer import Trainer


def build(
    backbone,
    n_clusters=10,
    n_prototypes=1000,
    projection_dim=128,
    hidden=1024,
    width=64,
    channels=3,
    side=32,
    features=20,
):
    """Our network and the reference network of the same configuration, with the same weights."""
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


def our_step(model, views, n_large, head_mask=None):
    """One call of the trainer's losses on view-major groups, as the training step makes them, with the
    estimator's default settings (temperature, Sinkhorn, marginal weight, penalty)."""
    params = {**IMCSwAVClustering().get_params(), "batch_size": views[0].shape[0], "n_large_crops": n_large}
    trainer = Trainer(model, None, training_config(params), torch.Generator().manual_seed(0))
    groups = [torch.cat(views[:n_large])]
    if len(views) > n_large:
        groups.append(torch.cat(views[n_large:]))
    if head_mask is not None:
        trainer.bank_target = int(head_mask.sum())  # this batch fills the bank: one head update on it
    return trainer.losses(groups, views[0].shape[0], head_mask)
