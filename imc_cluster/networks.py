"""Networks: ResNet and MLP encoders, and the IMC-SwAV model built on them.

The model has four parts (SPEC "Networks"): an encoder giving a feature ``h``; a projection
``Linear(d, d) -> Linear(d, 128)`` whose L2-normalised output is scored against ``K'`` L2-normalised
prototypes; and a cluster head, an MLP on the *detached* feature, so that the mutual-information loss
trains the head alone while the SwAV loss trains the encoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["RESNET_LAYOUTS", "ResNetEncoder", "MLPEncoder", "IMCSwAVNet"]

#: block type and blocks per stage of each ResNet depth
RESNET_LAYOUTS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}

#: shorter image side from which the stem is followed by a 2x2 max-pool (64x64 and 96x96 data)
STEM_POOL_MIN_SIDE = 64


def _stage(block: type[nn.Module], in_planes: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
        )
    blocks = [block(in_planes, planes, stride, downsample)]
    blocks += [block(out_planes, planes) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNetEncoder(nn.Module):
    """ResNet for small images: a 3x3 stride-1 stem, optional 2x2 max-pool, four stages, global pooling.

    Parameters
    ----------
    depth : {"resnet18", "resnet34", "resnet50"}
        Block type and stage depths.
    in_channels : int
        Image channels (1 or 3).
    width : int, default=64
        Channels of the stem and first stage; the stages have ``width * (1, 2, 4, 8)`` planes.
    stem_pool : bool, default=False
        Whether a 2x2 max-pool follows the stem (used for 64x64 and 96x96 images).

    Attributes
    ----------
    checkpointing : bool
        When set, training forward passes keep only the input of the stem and of every residual block, and
        recompute each of them during the backward pass (activation checkpointing): far less memory for
        about one more forward pass. BatchNorm running statistics then see every training batch twice.
    """

    def __init__(self, depth: str, in_channels: int, width: int = 64, stem_pool: bool = False) -> None:
        super().__init__()
        block, layout = RESNET_LAYOUTS[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if stem_pool else nn.Identity(),
        )
        stages, in_planes = [], width
        for i, n_blocks in enumerate(layout):
            stages.append(_stage(block, in_planes, width * 2**i, n_blocks, stride=1 if i == 0 else 2))
            in_planes = width * 2**i * block.expansion
        self.stages = nn.Sequential(*stages)
        self.out_features = in_planes
        self.checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, C, H, W) to features (B, out_features)."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            for part in (self.stem, *(block for stage in self.stages for block in stage)):
                x = checkpoint(part, x, use_reentrant=False)
        else:
            x = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class MLPEncoder(nn.Module):
    """Two-layer MLP encoder for plain feature vectors.

    Parameters
    ----------
    in_features : int
        Input dimension.
    width : int, default=64
        The hidden and output dimension is ``8 * width`` (512 by default, as ResNet-18's feature).
    """

    def __init__(self, in_features: int, width: int = 64) -> None:
        super().__init__()
        hidden = 8 * width
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        )
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map vectors (B, in_features) to features (B, out_features)."""
        return self.layers(x)


def _cluster_head(in_features: int, hidden: int, n_clusters: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, n_clusters),
    )


class IMCSwAVNet(nn.Module):
    """Encoder, projection, prototypes and cluster head of IMC-SwAV.

    Parameters
    ----------
    encoder : nn.Module
        Maps a batch of inputs to features; must expose ``out_features``.
    n_clusters : int
        Outputs ``K`` of the cluster head.
    n_prototypes : int, default=1000
        Number ``K'`` of prototypes.
    projection_dim : int, default=128
        Dimension of the projected, L2-normalised embedding.
    head_hidden_dim : int, default=1024
        Width of the cluster head's two hidden layers.
    """

    def __init__(self, encoder: nn.Module, n_clusters: int, n_prototypes: int = 1000,
                 projection_dim: int = 128, head_hidden_dim: int = 1024) -> None:
        super().__init__()
        features = encoder.out_features
        self.encoder = encoder
        self.projection = nn.Sequential(nn.Linear(features, features), nn.Linear(features, projection_dim))
        self.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
        self.head = _cluster_head(features, head_hidden_dim, n_clusters)
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise every prototype in place (done before each training step)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(self, views: Sequence[torch.Tensor], batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Prototype scores and cluster logits of every view.

        Parameters
        ----------
        views : sequence of Tensor
            Groups of same-sized views, each ``(n_views_in_group * batch_size, ...)``, view-major.
        batch_size : int
            Number ``B`` of images behind the views.

        Returns
        -------
        scores : list of Tensor (B, n_prototypes)
            ``u_v`` of every view, in order.
        logits : list of Tensor (B, n_clusters)
            Cluster-head logits ``y_v`` of every view; their gradient does not reach the encoder.
        """
        features = torch.cat([self.encoder(group) for group in views])
        scores = self.prototypes(F.normalize(self.projection(features), dim=1))
        logits = self.head(features.detach())
        return list(scores.split(batch_size)), list(logits.split(batch_size))

    def cluster_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster-head logits of un-augmented inputs."""
        return self.head(self.encoder(x))
