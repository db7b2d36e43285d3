"""imc-cluster: deep image clustering with IMC-SwAV, as easy as k-means.

>>> from imc_cluster import IMCSwAVClustering
>>> est = IMCSwAVClustering(n_clusters=10)  # doctest: +SKIP
>>> labels = est.fit(X).predict(X_new)  # doctest: +SKIP
"""

from .callbacks import EarlyStopping, StopTraining, TensorBoard
from .config import ConfigurationWarning
from .estimator import IMCSwAVClustering
from .metrics import cluster_accuracy, evaluate_clustering, top_k_cluster_accuracy

__version__ = "0.2.0"

__all__ = ["IMCSwAVClustering", "cluster_accuracy", "top_k_cluster_accuracy", "evaluate_clustering",
           "EarlyStopping", "TensorBoard", "StopTraining", "ConfigurationWarning", "__version__"]
