"""A network from its architecture: the plain-data description that fits and checkpoints carry."""

from __future__ import annotations

import contextlib
import threading

import torch

from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder, ResNetEncoder
from imc_cluster.model.pretrained import Pretrained, PretrainedEncoder, create_pretrained, parse_backbone

__all__ = ["load_pretrained", "build_network", "complete_architecture"]

#: the architecture entries that those saved before them lack, with what those networks have (imc-cluster 0.3
#: saved no head count: one head)
_ADDED_ENTRIES = {"n_heads": 1}


#: PyTorch's layers draw their initial weights from the process-wide CPU generator: one network is built at
#: a time, so that fits in several threads each get the weights of their own seed
_BUILDING = threading.Lock()


@contextlib.contextmanager
def _seeded(seed: int):
    """Draw initial weights from ``seed``, leaving the caller's random state (CPU and CUDA) as it was."""
    with _BUILDING, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def load_pretrained(backbone: str, weights, seed: int = 0) -> Pretrained:
    """The pretrained network ``backbone`` with ``weights`` (see
    :func:`~imc_cluster.model.pretrained.create_pretrained`); random weights are drawn from ``seed``."""
    with _seeded(seed):
        return create_pretrained(backbone, weights)


def _encoder(architecture: dict, pretrained: Pretrained | None):
    if architecture["backbone"] == "mlp":
        return MLPEncoder(architecture["in_size"], architecture["width"])
    if parse_backbone(architecture["backbone"]) is not None:
        if pretrained is None:  # weights restored by the caller
            pretrained = create_pretrained(architecture["backbone"], None, load=False)
        return PretrainedEncoder(
            pretrained.network, pretrained.out_features, architecture["pretrained"]["frozen"]
        )
    return ResNetEncoder(
        architecture["backbone"],
        architecture["in_size"],
        architecture["width"],
        stem_pool=architecture["stem_pool"],
    )


def build_network(architecture: dict, seed: int = 0, pretrained: Pretrained | None = None) -> IMCSwAVNet:
    """A freshly initialised network of ``architecture`` (see
    :func:`imc_cluster.estimator.components.architecture`), seeded by ``seed``, around the encoder
    ``pretrained`` where given. The caller's random state (CPU and CUDA) is left as it was, and builds in
    several threads do not disturb each other."""
    architecture = complete_architecture(architecture)
    with _seeded(seed):
        return IMCSwAVNet(
            _encoder(architecture, pretrained),
            architecture["n_clusters"],
            architecture["n_prototypes"],
            architecture["projection_dim"],
            architecture["head_hidden_dim"],
            architecture["n_heads"],
        )


def complete_architecture(architecture: dict) -> dict:
    """``architecture`` with the entries that architectures saved by earlier versions lack (a copy)."""
    return {**_ADDED_ENTRIES, **architecture}
