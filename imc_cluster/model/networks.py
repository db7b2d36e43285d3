"""Networks: ResNet and MLP encoders, and the IMC-SwAV model built on them.

The model has four parts (docs/method.md#networks): an encoder giving a feature ``h``; a projection
``Linear(d, d) -> Linear(d, 128)`` whose L2-normalised output is scored against ``K'`` L2-normalised
prototypes; and a cluster head, an MLP on the *detached* feature, so that the mutual-information loss
trains the head alone while the SwAV loss trains the encoder (or several heads trained together, whose
best predicts: :mod:`~imc_cluster.model.heads`; or such heads for each of several candidate numbers of
clusters, until the fit keeps those of the chosen one, :meth:`IMCSwAVNet.keep_candidate`).

Every BatchNorm layer is a :mod:`~imc_cluster.model.batchnorm` layer: in training, the views of a crop size
run through the encoder in one pass (and all views through the head in one pass), yet each view is normalised
with its own batch statistics, as the published code's one pass per view does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.resnet import BasicBlock, Bottleneck

from imc_cluster.model.batchnorm import ViewBatchNorm1d, ViewBatchNorm2d
from imc_cluster.model.heads import CandidateHeads, ClusterHeads, cluster_head
from imc_cluster.model.views import PerView, ViewSequential, image_major

__all__ = ["RESNET_LAYOUTS", "ResNetEncoder", "MLPEncoder", "IMCSwAVNet", "FeatureInput"]


class _ViewBasicBlock(BasicBlock, PerView):
    """torchvision's ``BasicBlock`` (same layers and keys) passing the view count to its BatchNorms."""

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x), n_views))
        out = self.bn2(self.conv2(out), n_views)
        out += x if self.downsample is None else self.downsample(x, n_views)
        return self.relu(out)


class _ViewBottleneck(Bottleneck, PerView):
    """torchvision's ``Bottleneck`` (same layers and keys) passing the view count to its BatchNorms."""

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x), n_views))
        out = self.relu(self.bn2(self.conv2(out), n_views))
        out = self.bn3(self.conv3(out), n_views)
        out += x if self.downsample is None else self.downsample(x, n_views)
        return self.relu(out)


#: block type and blocks per stage of each ResNet depth
RESNET_LAYOUTS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (_ViewBasicBlock, (2, 2, 2, 2)),
    "resnet34": (_ViewBasicBlock, (3, 4, 6, 3)),
    "resnet50": (_ViewBottleneck, (3, 4, 6, 3)),
}

#: shorter image side from which the stem is followed by a 2x2 max-pool (64x64 and 96x96 data)
STEM_POOL_MIN_SIDE = 64


def _stage(block: type[nn.Module], in_planes: int, planes: int, n_blocks: int, stride: int) -> ViewSequential:
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = ViewSequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), ViewBatchNorm2d(out_planes)
        )
    blocks = [block(in_planes, planes, stride, downsample, norm_layer=ViewBatchNorm2d)]
    blocks += [block(out_planes, planes, norm_layer=ViewBatchNorm2d) for _ in range(n_blocks - 1)]
    return ViewSequential(*blocks)


class ResNetEncoder(nn.Module, PerView):
    """ResNet for small images: a 3x3 stride-1 stem, optional 2x2 max-pool, four stages, global pooling.

    Parameters
    ----------
    depth : {"resnet18", "resnet34", "resnet50"}
        Block type and stage depths.
    in_channels : int
        Image channels (1 or 3).
    width : int
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

    def __init__(self, depth: str, in_channels: int, width: int, stem_pool: bool = False) -> None:
        super().__init__()
        block, layout = RESNET_LAYOUTS[depth]
        self.stem = ViewSequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            ViewBatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if stem_pool else nn.Identity(),
        )
        stages, in_planes = [], width
        for i, n_blocks in enumerate(layout):
            stages.append(_stage(block, in_planes, width * 2**i, n_blocks, stride=1 if i == 0 else 2))
            in_planes = width * 2**i * block.expansion
        self.stages = ViewSequential(*stages)
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

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """Map images (N, C, H, W) to features (N, out_features).

        ``n_views > 1``: in training, ``x`` holds image-major views (``x[b * n_views + v]``), each
        normalised with its own batch statistics.
        """
        if self.checkpointing and self.training and torch.is_grad_enabled():
            for part in (self.stem, *(block for stage in self.stages for block in stage)):
                x = checkpoint(part, x, n_views, use_reentrant=False)  # the recomputation gets n_views too
        else:
            x = self.stages(self.stem(x, n_views), n_views)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class MLPEncoder(nn.Module, PerView):
    """Two-layer MLP encoder for plain feature vectors.

    Parameters
    ----------
    in_features : int
        Input dimension.
    width : int
        The hidden and output dimension is ``8 * width`` (512 by default, as ResNet-18's feature).
    """

    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        hidden = 8 * width
        self.layers = ViewSequential(
            nn.Linear(in_features, hidden),
            ViewBatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            ViewBatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.out_features = hidden

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """Map vectors (N, in_features) to features (N, out_features); ``n_views`` as in
        :meth:`ResNetEncoder.forward`."""
        return self.layers(x, n_views)


class IMCSwAVNet(nn.Module):
    """Encoder, projection, prototypes and cluster head of IMC-SwAV.

    Parameters
    ----------
    encoder : nn.Module
        Maps a batch of inputs to features; must expose ``out_features`` and take ``(x, n_views)``.
    n_clusters : int or sequence of int
        Outputs ``K`` of the cluster head; or candidate numbers of clusters, each with ``n_heads`` heads
        (a :class:`~imc_cluster.model.heads.CandidateHeads`), until :meth:`keep_candidate` keeps one.
        Until then the network predicts with the chosen head of its first candidate.
    n_prototypes : int
        Number ``K'`` of prototypes.
    projection_dim : int
        Dimension of the projected, L2-normalised embedding.
    head_hidden_dim : int
        Width of the cluster head's two hidden layers.
    n_heads : int, default=1
        Cluster heads trained together on the same features: one is the published head
        (:func:`~imc_cluster.model.heads.cluster_head`), several are a
        :class:`~imc_cluster.model.heads.ClusterHeads`, whose chosen head (:meth:`select_head`) predicts.
        Candidate numbers of clusters need at least two.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_clusters: int | Sequence[int],
        n_prototypes: int,
        projection_dim: int,
        head_hidden_dim: int,
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        features = encoder.out_features
        self.encoder = encoder
        self.projection = nn.Sequential(nn.Linear(features, features), nn.Linear(features, projection_dim))
        self.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
        self.n_heads = n_heads
        candidates = isinstance(n_clusters, Sequence)
        self.n_clusters = tuple(int(k) for k in n_clusters) if candidates else n_clusters
        if candidates:
            if n_heads < 2:
                raise ValueError(f"candidate numbers of clusters need n_heads >= 2, got {n_heads}.")
            self.head = CandidateHeads(features, head_hidden_dim, self.n_clusters, n_heads)
        elif n_heads == 1:
            self.head = cluster_head(features, head_hidden_dim, n_clusters)
        else:
            self.head = ClusterHeads(features, head_hidden_dim, n_clusters, n_heads)
        self.normalize_prototypes()

    @property
    def predicted_clusters(self) -> int:
        """The clusters ``K`` of the head that predicts (of the first candidate, before one is kept)."""
        return self.n_clusters if self.candidates is None else self.candidates[0]

    @property
    def candidates(self) -> tuple[int, ...] | None:
        """The candidate numbers of clusters, or None for a network of one ``K``."""
        return self.n_clusters if isinstance(self.n_clusters, tuple) else None

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise every prototype in place (done before each training step)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(
        self, views: Sequence[torch.Tensor], batch_size: int, head: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Features, prototype scores and cluster logits of every view.

        Parameters
        ----------
        views : sequence of Tensor
            Groups of same-sized views, each ``(n_views_in_group * batch_size, ...)``, view-major.
        batch_size : int
            Number ``B`` of images behind the views.
        head : bool, default=True
            Whether to run the cluster head (False returns None logits).

        Returns
        -------
        features : Tensor (B, V, d)
            Encoder features ``h`` of every image and view.
        scores : Tensor (V, B, n_prototypes), float32
            Prototype scores ``u_v`` of every view.
        logits : Tensor (n_heads, V, B, n_clusters), tuple of them, or None
            Logits ``y_v`` of every cluster head and view (one tensor per candidate K with candidates);
            their gradient does not reach the encoder.
        """
        features = self.embed(views, batch_size)
        return features, self.prototype_scores(features), self.head_logits(features) if head else None

    def embed(self, views: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
        """Encoder features ``(B, V, d)`` of view-major groups, one encoder pass per group."""
        features = []
        for group in views:
            n_views = group.shape[0] // batch_size
            out = self.encoder(image_major(group, n_views), n_views)
            features.append(out.unflatten(0, (batch_size, n_views)))
        return torch.cat(features, dim=1)

    def prototype_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Scores ``(V, B, K')`` of features ``(B, V, d)``: the normalised projection times the prototypes.

        Projection and product run in float32 even under autocast: bf16 would round the cosines by about
        3e-3, i.e. about 0.06 in the ``u / eps`` that Sinkhorn-Knopp exponentiates. The projection's two
        linear layers, with nothing between them, are one linear map ``W2 W1 x + (W2 b1 + b2)``, and are
        applied as that map: the same outputs and gradients up to the order of float rounding, at a
        fraction of the cost once a batch holds more vectors than the projection has outputs (for a
        ResNet-50's 2048-d features, a quarter of the two layers' multiply-adds).
        """
        first, second = self.projection
        with torch.autocast(features.device.type, enabled=False):
            weight = second.weight @ first.weight
            bias = torch.addmv(second.bias, second.weight, first.bias)
            projected = F.normalize(F.linear(features.to(weight.dtype), weight, bias), dim=-1)
            scores = F.linear(projected, self.prototypes.weight)
        return scores.transpose(0, 1)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Logits ``(n_heads, V, B, K)`` of every cluster head on features ``(B, V, d)``, detached from the
        encoder, all views in one pass, each normalised on its own (one such tensor per candidate K with
        candidates)."""
        n_images, n_views = features.shape[:2]
        logits = self._every_head(features.detach().flatten(0, 1), n_views)
        if self.candidates is not None:
            return tuple(group.unflatten(1, (n_images, n_views)).transpose(1, 2) for group in logits)
        return logits.unflatten(1, (n_images, n_views)).transpose(1, 2)

    def _every_head(
        self, features: torch.Tensor, n_views: int = 1
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Logits ``(n_heads, N, K)`` of every cluster head on features ``(N, d)`` (one tensor per candidate
        K with candidates)."""
        logits = self.head(features, n_views)
        return logits.unsqueeze(0) if self.n_heads == 1 else logits

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of the chosen cluster head (:attr:`best_head`) on encoder features ``(N, d)``
        (of the first candidate K, with candidates); in training mode every head runs (the BatchNorm
        statistics of every head follow the data)."""
        logits = self.head(features)
        heads = self.head
        if self.candidates is not None:
            logits, heads = logits[0], self.head.groups[0]
        return logits if self.n_heads == 1 else logits.index_select(0, heads.best.view(1))[0]

    def cluster_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the chosen cluster head on un-augmented inputs."""
        return self.classify(self.encoder(x))

    def head_clusters(self, x: torch.Tensor) -> torch.Tensor:
        """The cluster of un-augmented inputs ``(N, ...)`` under every head, ``(N, n_heads)``; with
        candidates ``(N, n_candidates * n_heads)``, the heads of the first candidate first."""
        logits = self._every_head(self.encoder(x))
        groups = logits if self.candidates is not None else (logits,)
        return torch.cat([group.argmax(dim=-1).T for group in groups], dim=1)

    @property
    def best_head(self) -> int:
        """The cluster head that predicts (0 with one head; of the first candidate K with candidates)."""
        if self.candidates is not None:
            return int(self.head.groups[0].best)
        return 0 if self.n_heads == 1 else int(self.head.best)

    @property
    def best_heads(self) -> list[int]:
        """The chosen head of every candidate K (of the one K without candidates)."""
        if self.candidates is not None:
            return [int(group.best) for group in self.head.groups]
        return [self.best_head]

    def select_head(self, index: int | Sequence[int]) -> None:
        """Make head ``index`` the one that predicts; with several heads it is saved with the weights. With
        candidates, ``index`` is one head per candidate K (an int: of the first)."""
        indices = list(index) if isinstance(index, Sequence) else [index]
        groups = self.head.groups if self.candidates is not None else [self.head]
        if len(indices) > len(groups) or not all(0 <= i < self.n_heads for i in indices):
            raise ValueError(
                f"head {index} does not exist: the network has {self.n_heads} head(s) for each of "
                f"{len(groups)} number(s) of clusters."
            )
        if self.n_heads > 1:
            for group, chosen in zip(groups, indices):
                group.best.fill_(chosen)

    def keep_candidate(self, n_clusters: int) -> None:
        """Keep the heads of candidate ``n_clusters`` alone: the network is then one of ``n_clusters``
        clusters and ``n_heads`` heads (the same modules and weights' names), its chosen head as before."""
        if self.candidates is None:
            raise ValueError("keep_candidate needs a network of candidate numbers of clusters.")
        self.head = self.head.group(n_clusters)
        self.n_clusters = int(n_clusters)

    def on_features(self) -> IMCSwAVNet:
        """This network without its encoder: it takes encoder features ``(B, d)`` as its input and shares
        every other module (a frozen encoder's features are computed once, and the rest trains on them)."""
        network = copy.copy(self)
        network._modules = {**self._modules, "encoder": FeatureInput(self.encoder.out_features)}
        return network


class FeatureInput(nn.Module):
    """The encoder of a network that takes encoder features: float32 features, as they are."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """The features ``x`` as float32 (``n_views`` is accepted for the encoder interface)."""
        return x.float()
