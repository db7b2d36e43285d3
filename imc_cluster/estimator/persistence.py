"""A fitted estimator as checkpoint sections and back (the file format is :mod:`imc_cluster.checkpoints`)."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, plain, save_checkpoint, to_cpu
from imc_cluster.core.devices import resolve_device
from imc_cluster.core.numbers import is_integer
from imc_cluster.core.version import __version__
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.model.build import build_network

__all__ = ["CheckpointMixin", "save_estimator", "estimator_sections", "load_estimator", "rebuild_model"]


def save_estimator(estimator, path: str | os.PathLike) -> None:
    """Write a fitted :class:`~imc_cluster.IMCSwAVClustering` to ``path`` (see :func:`save_checkpoint`)."""
    save_checkpoint(estimator_sections(estimator), path, __version__)


def estimator_sections(estimator) -> dict:
    """The sections of a fitted estimator, as plain data and CPU tensors."""
    params = estimator.get_params()
    seed = params["random_state"]
    fitted = {
        "n_features_in_": int(estimator.n_features_in_),
        "n_iter_": int(estimator.n_iter_),
        "history_": plain(estimator.history_),
    }
    if hasattr(estimator, "labels_"):
        fitted["labels_"] = torch.from_numpy(np.asarray(estimator.labels_, dtype=np.int64).copy())
    if hasattr(estimator, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(name) for name in estimator.feature_names_in_]
    seed = int(seed) if is_integer(seed) else None
    return {
        "params": plain({**params, "random_state": seed}),
        "architecture": dict(estimator.architecture_),
        "inputs": estimator.inputs_.state_dict(),
        "fitted": fitted,
        "model": to_cpu(estimator.model_.state_dict()),
        "training": to_cpu(estimator.training_state_),
    }


def load_estimator(cls, path: str | os.PathLike, device: str | None = None):
    """An estimator of class ``cls`` from the checkpoint at ``path``, its model on ``device`` (None: the saved
    ``device`` parameter, or the CPU when this machine lacks it)."""
    if device is not None:
        resolve_device(device)  # a device asked for must exist: a ValueError names it
    content = load_checkpoint(path)
    defaults = cls().get_params()
    params = {
        key: tuple(value) if isinstance(defaults.get(key), tuple) and isinstance(value, list) else value
        for key, value in content["params"].items()
    }
    try:
        estimator = cls(**params)
        estimator._validate_params()
        if device is not None:
            estimator.set_params(device=device)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has invalid estimator parameters: {error}") from None
    fitted = content["fitted"]
    estimator.inputs_ = InputEncoder(estimator.image_shape, estimator.backbone, estimator.normalization)
    estimator.inputs_.load_state_dict(content["inputs"])
    estimator.architecture_ = content["architecture"]
    estimator.n_features_in_, estimator.n_iter_ = fitted["n_features_in_"], fitted["n_iter_"]
    estimator.history_ = fitted["history_"]
    if "labels_" in fitted:
        estimator.labels_ = fitted["labels_"].numpy()
    if "feature_names_in_" in fitted:
        estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    estimator.training_state_ = content["training"]
    try:
        rebuild_model(estimator, content["model"], estimator.device)
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} holds weights that do not fit its architecture: {str(error).splitlines()[0]}"
        ) from None
    return estimator


def rebuild_model(estimator, weights: dict, device: str) -> None:
    """``estimator.model_`` of its fitted architecture with ``weights``, in evaluation mode, on ``device``
    (the CPU when this machine lacks it)."""
    model = build_network(estimator.architecture_)
    model.load_state_dict(weights)
    try:
        estimator.device_ = resolve_device(device)
    except ValueError:
        estimator.device_ = torch.device("cpu")
    estimator.model_ = model.to(estimator.device_).eval()


class CheckpointMixin:
    """Saving and loading of :class:`~imc_cluster.IMCSwAVClustering`: checkpoint files and pickles."""

    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` atomically (a temporary file, then a rename).

        The file holds the parameters, the fitted architecture and inputs, the other fitted attributes, the
        network weights and the training state (optimiser, schedule, random state) as plain data and
        tensors under an integrity digest, so :meth:`load` reads it without unpickling any object, notices
        any corruption, and ``warm_start`` continues training from it exactly.

        Parameters
        ----------
        path : str or path-like
            Target file; its folder is created if needed.
        """
        check_is_fitted(self, "model_")
        save_estimator(self, path)

    @classmethod
    def load(cls, path, device: str | None = None) -> CheckpointMixin:
        """Read an estimator written by :meth:`save` (or a per-epoch checkpoint).

        Parameters
        ----------
        path : str or path-like
            Checkpoint file.
        device : str, default=None
            Where to put the model ("auto", "cpu", "cuda", "cuda:N"); None keeps the saved ``device``
            parameter, falling back to the CPU when it names a GPU this machine lacks (a checkpoint written
            on a GPU loads on a CPU-only machine).

        Returns
        -------
        estimator : IMCSwAVClustering
            Fitted; ``labels_`` is present when the file was written after ``fit`` completed.

        Raises
        ------
        CheckpointError
            When the file is not an intact imc-cluster checkpoint, or its sections are invalid.
        """
        return load_estimator(cls, path, device)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may return __dict__ itself
        if "model_" in state:  # weights as CPU tensors: a model fitted on a GPU unpickles anywhere
            state["model_"] = to_cpu(self.model_.state_dict())
            state["training_state_"] = to_cpu(self.training_state_)
            state.pop("device_", None)
        return state

    def __setstate__(self, state):
        weights = state.get("model_")
        super().__setstate__(state)
        if isinstance(weights, dict):
            rebuild_model(self, weights, self.device)
