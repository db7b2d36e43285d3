"""A network from its architecture: the plain-data description that fits and checkpoints carry."""

from __future__ import annotations

import threading

import torch

from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder, ResNetEncoder

__all__ = ["build_network"]


#: PyTorch's layers draw their initial weights from the process-wide CPU generator: one network is built at
#: a time, so that fits in several threads each get the weights of their own seed
_BUILDING = threading.Lock()


def build_network(architecture: dict, seed: int = 0) -> IMCSwAVNet:
    """A freshly initialised network of ``architecture`` (see
    :func:`imc_cluster.estimator.components.architecture`), seeded by ``seed``. The caller's random state
    (CPU and CUDA) is left as it was, and builds in several threads do not disturb each other."""
    with _BUILDING, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        if architecture["backbone"] == "mlp":
            encoder = MLPEncoder(architecture["in_size"], architecture["width"])
        else:
            encoder = ResNetEncoder(
                architecture["backbone"],
                architecture["in_size"],
                architecture["width"],
                stem_pool=architecture["stem_pool"],
            )
        return IMCSwAVNet(
            encoder,
            architecture["n_clusters"],
            architecture["n_prototypes"],
            architecture["projection_dim"],
            architecture["head_hidden_dim"],
        )
