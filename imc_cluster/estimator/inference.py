"""The fitted estimator's inference: ``predict``, ``predict_proba``, ``transform`` and ``score`` on new
samples, encoded as the training data were (a frozen encoder's features from its feature store)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted

from imc_cluster.data.arrays import true_labels
from imc_cluster.estimator import fitting
from imc_cluster.estimator.frozen import frozen_outputs
from imc_cluster.estimator.params import checked_params
from imc_cluster.inference.outputs import outputs
from imc_cluster.metrics import cluster_accuracy, information_score

__all__ = ["InferenceMixin"]


class InferenceMixin(TransformerMixin):
    """The inference methods of :class:`~imc_cluster.estimator.estimator.IMCSwAVClustering` (a
    ``TransformerMixin``, so that scikit-learn's ``set_output`` wraps the ``transform`` defined here)."""

    def _outputs(self, network: str, X) -> torch.Tensor:
        """``model_``'s ``network`` ("cluster_logits" or "encoder") on ``X``, encoded as the training data
        were."""
        check_is_fitted(self, "model_")
        params = checked_params(self)  # inference reads batch_size, precision and cache_dir
        values = self.inputs_.encode(X, self).values
        if self.architecture_.get("pretrained", {}).get("frozen"):
            return frozen_outputs(network, params, fitting.Fitted.of(self), values)
        return outputs(
            getattr(self.model_, network),
            self.model_,
            self.inputs_,
            values,
            device=self.device_,
            batch_size=params["batch_size"],
            precision=params["precision"],
        )

    def predict(self, X) -> np.ndarray:
        """Cluster of every sample: the argmax of the head's logits on the un-augmented input.

        Parameters
        ----------
        X : array-like, tensor, torch Dataset or DataLoader
            Samples shaped like the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster indices in ``[0, n_clusters)`` of the fitted network.
        """
        return self._outputs("cluster_logits", X).argmax(dim=1).numpy().astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Soft cluster assignment: the softmax of the head's logits.

        Parameters
        ----------
        X : array-like, tensor, torch Dataset or DataLoader
            Samples shaped like the training data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        return torch.softmax(self._outputs("cluster_logits", X).double(), dim=1).numpy()

    def transform(self, X) -> np.ndarray:
        """Encoder features of the un-augmented input.

        Parameters
        ----------
        X : array-like, tensor, torch Dataset or DataLoader
            Samples shaped like the training data.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out), float32
            512-d for ResNet-18/34 at the default width, 2048-d for ResNet-50 (see ``set_output``). A
            frozen encoder's are float16 values, kept in (and read from) the cache folder.
        """
        return self._outputs("encoder", X).numpy()

    def score(self, X, y=None) -> float:
        """Quality of the clustering of ``X``; higher is better.

        Parameters
        ----------
        X : array-like, tensor, torch Dataset or DataLoader
            Samples shaped like the training data.
        y : array-like of shape (n_samples,), default=None
            True classes. When given, the score is the clustering accuracy (best one-to-one map).

        Returns
        -------
        score : float
            With ``y``: accuracy in [0, 1]. Without: the mutual information ``I(X; Y)`` between samples and
            clusters in nats, ``H(mean_x p(y|x)) - mean_x H(p(y|x))``, the information-maximisation objective
            per sample; between 0 and ``log(n_clusters)``, high for confident, balanced clusters.
        """
        proba = self.predict_proba(X)
        if y is not None:
            return cluster_accuracy(true_labels(y, proba.shape[0], "y"), proba.argmax(axis=1))
        return information_score(proba)

    @property
    def _n_features_out(self) -> int:
        """Dimension of the encoder's feature (``get_feature_names_out`` names them)."""
        return self.model_.encoder.out_features

    @property
    def input_shape_(self) -> tuple[int, ...]:
        """``(C, H, W)`` of the training images, or ``(n_features,)`` of the vectors (``inputs_``'s)."""
        return self.inputs_.sample_shape
