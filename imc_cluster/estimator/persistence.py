"""A fitted estimator as checkpoint sections and back (the file format is :mod:`imc_cluster.checkpoints`)."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint, to_cpu
from imc_cluster.core.devices import resolve_device
from imc_cluster.core.numbers import is_integer, to_python
from imc_cluster.core.version import __version__
from imc_cluster.criteria import select_n_clusters
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.estimator.fitted import Fitted
from imc_cluster.model.build import build_network, complete_architecture
from imc_cluster.model.networks import IMCSwAVNet

__all__ = ["CheckpointMixin"]


def save_estimator(estimator, path: str | os.PathLike) -> None:
    """Write a fitted :class:`~imc_cluster.IMCSwAVClustering` to ``path`` (see :func:`save_checkpoint`)."""
    save_checkpoint(estimator_sections(estimator), path, __version__)


def _record(record: dict) -> dict:
    """A ``history_`` record as plain data: numpy values as Python ones, anything else a callback put there
    that is not a number, a bool, a string, None or a list of them, as its ``repr``."""
    return {str(key): _plain_value(to_python(value)) for key, value in record.items()}


def _plain_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_value(item) for item in value]
    return repr(value)


def estimator_sections(estimator) -> dict:
    """The sections of a fitted estimator, as plain data and CPU tensors. The parameters hold no
    ``checkpoint_path`` (a loaded model writes only where its new user says) and an integer
    ``random_state`` or None."""
    params = {  # paths (weights, cache_dir) as strings
        key: os.fspath(value) if isinstance(value, os.PathLike) else value
        for key, value in to_python(estimator.get_params()).items()
    }
    seed = params["random_state"] if is_integer(params["random_state"]) else None
    fitted = {
        "n_features_in_": int(estimator.n_features_in_),
        "n_iter_": int(estimator.n_iter_),
        "history_": [_record(record) for record in estimator.history_],
        "best_head_": estimator.model_.best_head,
    }
    if hasattr(estimator, "n_clusters_"):
        fitted["n_clusters_"] = int(estimator.n_clusters_)
    if getattr(estimator, "k_scores_", None) is not None:
        fitted["k_scores_"] = {int(k): float(score) for k, score in estimator.k_scores_.items()}
    if hasattr(estimator, "labels_"):
        fitted["labels_"] = torch.from_numpy(np.asarray(estimator.labels_, dtype=np.int64).copy())
    if hasattr(estimator, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(name) for name in estimator.feature_names_in_]
    return {
        "params": {**params, "random_state": seed, "checkpoint_path": None},
        "architecture": dict(estimator.architecture_),
        "inputs": estimator.inputs_.state_dict(),
        "fitted": fitted,
        "model": to_cpu(estimator.model_.state_dict()),
        "training": to_cpu(estimator.training_state_),
    }


def load_estimator(cls, path: str | os.PathLike, device: str | None = None):
    """An estimator of class ``cls`` from the checkpoint at ``path``, its model on ``device`` (None: the saved
    ``device`` parameter, or the CPU when this machine lacks it), with ``checkpoint_path=None``."""
    if device is not None:
        resolve_device(device)  # a device asked for must exist: a ValueError names it
    content = load_checkpoint(path)
    defaults = cls().get_params()
    params = {
        key: tuple(value) if isinstance(defaults.get(key), tuple) and isinstance(value, list) else value
        for key, value in content["params"].items()
    }
    try:
        estimator = cls(**{**params, "checkpoint_path": None})
        estimator._validate_params()
        if device is not None:
            estimator.set_params(device=device)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has invalid estimator parameters: {error}") from None
    fitted, architecture = content["fitted"], complete_architecture(content["architecture"])
    _check_choice(path, fitted.get("k_scores_"), architecture["n_clusters"])
    labels = fitted["labels_"].numpy() if "labels_" in fitted else None
    if (
        labels is not None
        and labels.size
        and not 0 <= labels.min() <= labels.max() < architecture["n_clusters"]
    ):
        raise CheckpointError(f"{path} holds labels_ outside [0, {architecture['n_clusters']}).")
    inputs = InputEncoder(estimator.image_shape, estimator.backbone, estimator.normalization)
    try:
        inputs.load_state_dict(content["inputs"])
    except ValueError as error:  # a preprocessing we do not apply
        raise CheckpointError(f"{path} has invalid inputs: {error}") from None
    try:
        model, device_ = rebuild_model(architecture, content["model"], estimator.device)
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} holds weights that do not fit its architecture: {str(error).splitlines()[0]}"
        ) from None
    if "best_head_" in fitted:  # imc-cluster 0.3 saved none: its networks have one head
        try:
            model.select_head(fitted["best_head_"])
        except ValueError as error:
            raise CheckpointError(f"{path} holds an invalid best_head_: {error}") from None
    estimator._set_fitted(
        Fitted(
            inputs,
            device_,
            architecture,
            model,
            content["training"],
            fitted["history_"],
            fitted["n_iter_"],
            labels,
            fitted["n_features_in_"],
            k_scores=fitted.get("k_scores_"),
        )
    )
    if "feature_names_in_" in fitted:
        estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    return estimator


def _check_choice(path, k_scores: dict | None, n_clusters) -> None:
    """The K that a fit chose among candidates is the one that the criterion chooses from their scores."""
    if k_scores is not None and select_n_clusters(k_scores) != n_clusters:
        raise CheckpointError(
            f"{path} holds the network of n_clusters={n_clusters}, but its k_scores_ {k_scores} choose "
            f"{select_n_clusters(k_scores)}."
        )


def rebuild_model(architecture: dict, weights: dict, device: str) -> tuple[IMCSwAVNet, torch.device]:
    """The network of ``architecture`` with ``weights`` (of its own dtypes), in evaluation mode, on ``device``
    (the CPU when this machine lacks it)."""
    model = build_network(architecture)
    expected = model.state_dict()
    for name, tensor in weights.items():
        if name in expected and tensor.dtype != expected[name].dtype:
            raise TypeError(f"weight {name!r} is {tensor.dtype}, not {expected[name].dtype}")
    model.load_state_dict(weights)
    try:
        placed = resolve_device(device)
    except ValueError:
        placed = torch.device("cpu")
    return model.to(placed).eval(), placed


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
            Fitted; ``labels_`` is present when the file was written after ``fit`` completed. Its
            ``checkpoint_path`` is None whatever it was in training: a later ``fit`` (a ``warm_start`` too)
            writes a checkpoint only where ``set_params(checkpoint_path=...)`` says, never over the file
            the model was trained into.

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
        if isinstance(weights, dict):  # a copy of a fitted model writes no checkpoint where its original does
            architecture = complete_architecture(state["architecture_"])  # of any version
            state = {**state, "checkpoint_path": None, "architecture_": architecture}
        super().__setstate__(state)
        if isinstance(weights, dict):
            self.model_, self.device_ = rebuild_model(self.architecture_, weights, self.device)
            self.best_head_ = self.model_.best_head  # saved with the weights
