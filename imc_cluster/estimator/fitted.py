"""What a fit learns (:class:`Fitted`, the estimator's fitted attributes), and a fresh one for a new fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.utils import check_random_state

from imc_cluster.data import arrays as data_lib
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.estimator import components
from imc_cluster.inference.outputs import outputs
from imc_cluster.model.build import build_network
from imc_cluster.model.networks import IMCSwAVNet
from imc_cluster.training.distributed import World
from imc_cluster.training.recalibration import recalibrate_batch_norm

__all__ = ["Fitted", "initial_state"]


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
        )

    def attributes(self) -> dict:
        """The estimator attributes of this state (``labels_`` once the fit has finished)."""
        names = ("inputs", "device", "architecture", "model", "training_state", "history", "n_iter")
        attributes = {f"{name}_": getattr(self, name) for name in names}
        if self.labels is not None:
            attributes["labels_"] = self.labels
        if self.n_features_in is not None:
            attributes["n_features_in_"] = self.n_features_in
        return attributes

    def logits(self, params: dict, values: torch.Tensor) -> torch.Tensor:
        """Cluster logits of encoded ``values`` (the model in evaluation mode)."""
        return outputs(
            self.model.cluster_logits,
            self.model,
            self.inputs,
            values,
            device=self.device,
            batch_size=params["batch_size"],
            precision=params["precision"],
        )

    def recalibrate(self, params: dict, values: torch.Tensor, world: World | None) -> None:
        """Re-estimate the BatchNorm statistics; every rank of a distributed fit re-estimates them alike and
        then takes rank 0's (a GPU's reductions need not be bit-reproducible)."""
        recalibrate_batch_norm(
            self.model,
            values,
            self.inputs.network_input,
            batch_size=params["batch_size"],
            n_batches=params["bn_recalibration_batches"],
            seed=self.training_state["seed"],
            device=self.device,
        )
        if world is not None:
            world.broadcast_buffers(self.model)


def initial_state(
    params: dict, inputs: InputEncoder, data: data_lib.PreparedData, device: torch.device, world: World | None
) -> Fitted:
    """Fresh statistics, network and training state for a new fit (of rank 0's seed on every rank)."""
    if data.is_image:
        inputs.fit_statistics(data.values)
    seed = int(check_random_state(params["random_state"]).randint(np.iinfo(np.int32).max))
    if world is not None:
        seed = world.broadcast(seed)
    architecture = components.architecture(params, inputs)
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
        build_network(architecture, seed),
        training_state,
        n_features_in=n_features_in,
    )
