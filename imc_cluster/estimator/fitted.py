"""What a fit learns (:class:`Fitted`, the estimator's fitted attributes), and a fresh one for a new fit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.utils import check_random_state

from imc_cluster.augmentation.cached import EVALUATION_VIEW
from imc_cluster.core.halves import from_scaled_half
from imc_cluster.data import arrays as data_lib
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.estimator import components
from imc_cluster.inference.outputs import run
from imc_cluster.model.build import build_network
from imc_cluster.model.networks import IMCSwAVNet
from imc_cluster.model.pretrained import Pretrained
from imc_cluster.training.distributed import World
from imc_cluster.training.recalibration import recalibrate_batch_norm

__all__ = ["Fitted", "fit_seed", "initial_state"]


@dataclass
class Fitted:
    """What a fit learns: the estimator's fitted attributes (each name with a trailing ``_`` there)."""

    inputs: InputEncoder
    device: torch.device
    architecture: dict | None = None
    model: IMCSwAVNet | None = None
    training_state: dict | None = None
    history: list = field(default_factory=list)
    n_iter: int = 0
    labels: np.ndarray | None = None
    n_features_in: int | None = None  # of images; scikit-learn's validate_data sets it for vectors
    on_features: bool = False  # a frozen encoder's fit: the training values are its cached features
    k_scores: dict | None = None  # of a fit that chose n_clusters among candidates: each candidate's score

    @classmethod
    def of(cls, est) -> Fitted:
        """The fitted state of a fitted estimator (a warm start continues it)."""
        return cls(
            est.inputs_,
            est.device_,
            est.architecture_,
            est.model_,
            est.training_state_,
            list(est.history_),
            est.n_iter_,
            getattr(est, "labels_", None),
            k_scores=getattr(est, "k_scores_", None),
        )

    def attributes(self) -> dict:
        """The estimator attributes of this state (``labels_`` once the fit has finished); ``best_head_`` is
        the network's chosen head."""
        names = ("inputs", "device", "architecture", "model", "training_state", "history", "n_iter")
        attributes = {f"{name}_": getattr(self, name) for name in names}
        attributes["best_head_"] = self.model.best_head
        if self.labels is not None:
            attributes["labels_"] = self.labels
        if self.n_features_in is not None:
            attributes["n_features_in_"] = self.n_features_in
        if isinstance(self.architecture["n_clusters"], int):  # once chosen, among candidates
            attributes.update(n_clusters_=self.architecture["n_clusters"], k_scores_=self.k_scores)
        return attributes

    def _network(self) -> tuple[IMCSwAVNet, Callable[[torch.Tensor], torch.Tensor]]:
        """The network the fit's values go through, and their network input: on a frozen encoder's cached
        features, the network without its encoder, on the un-augmented view's features."""
        if self.on_features:
            return self.model.on_features(), _evaluation_view
        return self.model, self.inputs.network_input

    def logits(self, params: dict, values: torch.Tensor, output: str = "cluster_logits") -> torch.Tensor:
        """Cluster logits of the fit's ``values`` (the model in evaluation mode), or the network's ``output``
        ("head_clusters": the cluster under every head)."""
        network, network_input = self._network()
        return run(
            network,
            getattr(network, output),
            values,
            network_input,
            device=self.device,
            batch_size=params["batch_size"],
            bfloat16=self.device.type == "cuda" and params["precision"] != "float32",
        )

    def recalibrate(self, params: dict, values: torch.Tensor, world: World | None) -> None:
        """Re-estimate the BatchNorm statistics; every rank of a distributed fit re-estimates them alike and
        then takes rank 0's (a GPU's reductions need not be bit-reproducible)."""
        network, network_input = self._network()
        recalibrate_batch_norm(
            network,
            values,
            network_input,
            batch_size=params["batch_size"],
            n_batches=params["bn_recalibration_batches"],
            seed=self.training_state["seed"],
            device=self.device,
        )
        self.model.eval()
        if world is not None:
            world.broadcast_buffers(self.model)


def _evaluation_view(features: torch.Tensor) -> torch.Tensor:
    """The features of the un-augmented view: cached ones ``(B, 1 + V, d + 1)`` (scaled halves) hold it
    first; features ``(B, d)`` are taken as they are."""
    return from_scaled_half(features[:, EVALUATION_VIEW]) if features.dim() == 3 else features


def fit_seed(params: dict, world: World | None) -> int:
    """The seed of a new fit, drawn from ``random_state`` (rank 0's on every rank)."""
    seed = int(check_random_state(params["random_state"]).randint(np.iinfo(np.int32).max))
    return seed if world is None else world.broadcast(seed)


def initial_state(
    params: dict,
    inputs: InputEncoder,
    data: data_lib.PreparedData,
    device: torch.device,
    seed: int,
    pretrained: Pretrained | None = None,
) -> Fitted:
    """Fresh statistics, network (around the ``pretrained`` encoder, where given) and training state for a
    new fit from ``seed``."""
    if data.is_image:
        inputs.fit_statistics(data.values)
    identity = None if pretrained is None else pretrained.weights_identity
    architecture = components.architecture(params, inputs, identity)
    generator = torch.Generator(device).manual_seed(seed)
    training_state = {
        "updates": 0,
        "epoch": 0,
        "generator": generator.get_state(),
        "generator_device": device.type,
        "seed": seed,
    }
    n_features_in = int(np.prod(data.sample_shape)) if data.is_image else None
    return Fitted(
        inputs,
        device,
        architecture,
        build_network(architecture, seed, pretrained),
        training_state,
        n_features_in=n_features_in,
    )
